import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { SessionsService } from '../../sessions/sessions.service.js';

/** Most resources one 2025-era session may be subscribed to at once (one more: -32602). */
export const MAX_SUBSCRIPTIONS_PER_SESSION = 100;

/** Bus topic: write `{ sessionId, event }` to that session's GET stream, on whichever replica holds it. */
const SESSION_EVENT = 'mcp.session-event';
/** Bus topic: a session unsubscribed `{ sessionId, uri }` on a replica that does not hold that subscription. */
const SESSION_UNSUBSCRIBED = 'mcp.session-unsubscribed';

/**
 * Starts watching one resource for a session: resolves with the watch's release, or rejects
 * with the JSON-RPC error the client gets. `deliver` is called with the params of each
 * `notifications/resources/updated` (already carrying the URI as the client knows it).
 */
export type ResourceWatch = (deliver: (params: Record<string, unknown>) => void) => Promise<() => void>;

/**
 * The 2025-era resource subscriptions of the legacy sessions (`resources/subscribe` /
 * `resources/unsubscribe`, MCP spec 2025-11-25 server/resources "Subscriptions"): which
 * session watches which URI (as the client named it: `gatehouse://<server>/<uri>` on `/mcp`),
 * and the upstream watch behind each. The upstream is subscribed once per (connection, URI)
 * however many sessions watch it (`UpstreamConnection.watchResource`).
 *
 * Replicas: a subscription is held by the replica that received the `resources/subscribe`.
 * Updates are written to the session's GET stream where this replica holds it, else passed
 * over the change bus to the replica that does. An `unsubscribe` reaching another replica is
 * passed on the same way; a session that ends (DELETE, expiry, sweep — heard by every
 * replica) drops its subscriptions everywhere. Subscriptions live in this replica's memory:
 * a restart of the replica ends them (clients subscribe again when they open a new session).
 */
@Injectable()
export class SessionSubscriptions implements OnApplicationBootstrap, BeforeApplicationShutdown {
  /** Session id → client URI → the watch's release (a promise while the subscribe is in flight). */
  private readonly bySession = new Map<string, Map<string, Promise<(() => void) | undefined>>>();
  private sessionStream: (sessionId: string, event: string) => boolean = () => false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
  ) {}

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.bus.subscribe<{ sessionId?: string; event?: string }>(SESSION_EVENT, (e) => {
        if (!e.local && e.data?.sessionId && e.data.event) this.sessionStream(e.data.sessionId, e.data.event);
      }),
      this.bus.subscribe<{ sessionId?: string; uri?: string }>(SESSION_UNSUBSCRIBED, (e) => {
        if (!e.local && e.data?.sessionId && typeof e.data.uri === 'string') this.drop(e.data.sessionId, e.data.uri);
      }),
      this.sessions.onClosed((id) => this.dropSession(id)),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    for (const id of [...this.bySession.keys()]) this.dropSession(id);
  }

  /** Set by the notification fan-out, which holds the GET streams: writes an SSE event to one of `sessionId`'s streams here; false when none is open here. */
  useSessionStreams(write: (sessionId: string, event: string) => boolean): void {
    this.sessionStream = write;
  }

  /** Subscriptions this replica holds for `sessionId` (client URIs). */
  of(sessionId: string): string[] {
    return [...(this.bySession.get(sessionId)?.keys() ?? [])];
  }

  /**
   * Subscribes `sessionId` to `uri` (the URI as the client named it) through `watch`.
   * Idempotent: a second subscribe to the same URI keeps the first. Rejects with -32602 past
   * {@link MAX_SUBSCRIPTIONS_PER_SESSION}, or with `watch`'s error (nothing is then held).
   */
  async subscribe(sessionId: string, uri: string, watch: ResourceWatch): Promise<void> {
    let uris = this.bySession.get(sessionId);
    const existing = uris?.get(uri);
    if (existing && (await existing)) return;
    if ((uris?.size ?? 0) >= MAX_SUBSCRIPTIONS_PER_SESSION) {
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `This session is subscribed to ${MAX_SUBSCRIPTIONS_PER_SESSION} resources, the most Gatehouse allows: unsubscribe from one first`);
    }
    if (!uris) this.bySession.set(sessionId, (uris = new Map<string, Promise<(() => void) | undefined>>()));
    const held = watch((params) => this.deliver(sessionId, 'notifications/resources/updated', params));
    const entry = held.then(
      (release) => release,
      () => undefined,
    );
    uris.set(uri, entry);
    try {
      const release = await held;
      // Unsubscribed (or the session ended) while the subscribe was in flight.
      if (this.bySession.get(sessionId)?.get(uri) !== entry) release();
    } catch (error) {
      if (this.bySession.get(sessionId)?.get(uri) === entry) this.forget(sessionId, uri);
      throw error;
    }
  }

  /** Unsubscribes `sessionId` from `uri`, here or on the replica that holds the subscription. Unknown: nothing to do (the spec's answer is still an empty result). */
  unsubscribeSession(sessionId: string, uri: string): void {
    if (!this.drop(sessionId, uri)) void this.bus.publish(SESSION_UNSUBSCRIBED, { sessionId, uri }).catch(() => undefined);
  }

  /**
   * Writes a notification to `sessionId`'s GET stream: here when this replica holds one, else
   * over the change bus (an event too large for the bus is dropped; an `updated` is small).
   */
  deliver(sessionId: string, method: string, params: Record<string, unknown>): void {
    const event = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method, params })}\n\n`;
    if (this.sessionStream(sessionId, event)) return;
    void this.bus.publish(SESSION_EVENT, { sessionId, event }).catch(() => undefined);
  }

  private drop(sessionId: string, uri: string): boolean {
    const entry = this.bySession.get(sessionId)?.get(uri);
    if (!entry) return false;
    this.forget(sessionId, uri);
    void entry.then((release) => release?.());
    return true;
  }

  private forget(sessionId: string, uri: string): void {
    const uris = this.bySession.get(sessionId);
    uris?.delete(uri);
    if (uris?.size === 0) this.bySession.delete(sessionId);
  }

  private dropSession(sessionId: string): void {
    for (const uri of this.of(sessionId)) this.drop(sessionId, uri);
  }
}
