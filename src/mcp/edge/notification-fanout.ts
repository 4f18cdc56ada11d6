import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { Principal } from '../../auth/principal.js';
import { SessionsService, type LiveSession } from '../../sessions/sessions.service.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import { OFFERING_KINDS, type OfferingKind } from '../../upstreams/offering-kinds.js';
import { jsonRpcError } from './json-rpc.js';
import { SdkServing } from './sdk-serving.js';
import { ClientRequests } from '../pipeline/server-requests.js';
import { SessionSubscriptions } from '../pipeline/resource-subscriptions.js';

/**
 * Who a notification stream is counted against (MCP_MAX_STREAMS_PER_PRINCIPAL): the principal,
 * or — without credentials and under `none`, where every client is one principal — the client
 * address.
 */
export function streamOwner(principal: Principal, clientAddress: string | undefined): string {
  return principal.method === 'none' ? `address:${clientAddress ?? 'unknown'}` : principal.id;
}

/** `Retry-After` (s) of the 429 for a principal at its stream maximum (no natural time: streams end when clients close them). */
export const STREAM_RETRY_AFTER_S = 30;

/** Interval of SSE comment lines on held legacy GET streams, in ms (keeps proxies from timing out). */
export const KEEPALIVE_MS = 15_000;

interface HeldStream {
  sessionId: string;
  owner: string;
  scope: string;
  write(chunk: string): void;
  close(): void;
}

/**
 * Server-to-client notifications: the legacy GET streams this replica holds and the modern
 * `subscriptions/listen` streams (served by the SDK). When an upstream's catalog changes
 * (observed on every replica from the change bus), each stream whose scope includes it gets
 * `notifications/tools/list_changed`, `…/prompts/list_changed` and/or `…/resources/list_changed`
 * for what changed. A closed session's streams end.
 *
 * Bounds (per replica, since streams are held in its memory): at most
 * MCP_MAX_STREAMS_PER_SESSION legacy GET streams per session (one more: 409), and at most
 * MCP_MAX_STREAMS_PER_PRINCIPAL GET plus listen streams per owner — the principal id, or
 * `address:<ip>` for clients without credentials and under `none` (one more: 429).
 */
@Injectable()
export class NotificationFanout implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly streams = new Set<HeldStream>();
  private readonly listenStreams = new Set<() => void>();
  /** Open GET + listen streams per owner (see the class doc). */
  private readonly perOwner = new Map<string, number>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly maxPerSession: number;
  private readonly maxPerOwner: number;

  constructor(
    private readonly upstreams: UpstreamServersService,
    private readonly sessions: SessionsService,
    private readonly sdk: SdkServing,
    @Inject(APP_CONFIG) config: AppConfig,
    clientRequests: ClientRequests,
    subscriptions: SessionSubscriptions,
  ) {
    clientRequests.useSessionStreams((sessionId, event) => this.writeToSession(sessionId, event));
    subscriptions.useSessionStreams((sessionId, event) => this.writeToSession(sessionId, event));
    this.maxPerSession = config.mcp.maxStreamsPerSession;
    this.maxPerOwner = config.mcp.maxStreamsPerPrincipal;
  }

  /** Why `owner` may not open one more stream (it holds MCP_MAX_STREAMS_PER_PRINCIPAL here), or undefined. */
  ownerRefusal(owner: string): string | undefined {
    if ((this.perOwner.get(owner) ?? 0) < this.maxPerOwner) return undefined;
    return `Too many open notification streams for this principal (${this.maxPerOwner}, MCP_MAX_STREAMS_PER_PRINCIPAL): close one (GET or subscriptions/listen) first`;
  }

  private countOwner(owner: string, delta: 1 | -1): void {
    const n = (this.perOwner.get(owner) ?? 0) + delta;
    if (n > 0) this.perOwner.set(owner, n);
    else this.perOwner.delete(owner);
  }

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.upstreams.onToolsChanged((server, kinds) => this.catalogChanged(server, kinds ?? OFFERING_KINDS)),
      this.sessions.onClosed((id) => {
        for (const stream of this.streams) if (stream.sessionId === id) stream.close();
      }),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.endStreams();
  }

  /** Ends every long-lived stream this replica holds (shutdown: clients reconnect elsewhere). */
  endStreams(): void {
    for (const stream of this.streams) stream.close();
    for (const end of this.listenStreams) end();
    this.listenStreams.clear();
  }

  /**
   * Registers a modern `subscriptions/listen` exchange so {@link endStreams} can end it; returns
   * its removal. With `owner`, counted against MCP_MAX_STREAMS_PER_PRINCIPAL: check
   * {@link ownerRefusal} first.
   */
  holdListenStream(end: () => void, owner?: string): () => void {
    this.listenStreams.add(end);
    if (owner !== undefined) this.countOwner(owner, 1);
    let released = false;
    return () => {
      this.listenStreams.delete(end);
      if (owner !== undefined && !released) this.countOwner(owner, -1);
      released = true;
    };
  }

  /**
   * The legacy server-to-client stream of `session`: list-changed notifications and keep-alives.
   * `owner` (default: the session's principal) is what MCP_MAX_STREAMS_PER_PRINCIPAL counts.
   * 409 when the session already holds MCP_MAX_STREAMS_PER_SESSION streams here, 429 when the
   * owner holds MCP_MAX_STREAMS_PER_PRINCIPAL.
   */
  openStream(request: Request, session: LiveSession, owner = session.principal): Response {
    if (!(request.headers.get('accept') ?? '').includes('text/event-stream')) {
      return jsonRpcError(406, -32000, 'Not Acceptable: the GET stream needs Accept: text/event-stream');
    }
    let ofSession = 0;
    for (const s of this.streams) if (s.sessionId === session.id) ofSession++;
    if (ofSession >= this.maxPerSession) {
      return jsonRpcError(
        409,
        -32000,
        `Conflict: this session already has ${ofSession} open GET stream(s) (MCP_MAX_STREAMS_PER_SESSION=${this.maxPerSession}); close one before opening another`,
      );
    }
    const refused = this.ownerRefusal(owner);
    if (refused) return jsonRpcError(429, -32000, refused, { 'retry-after': String(STREAM_RETRY_AFTER_S) });
    const encoder = new TextEncoder();
    let held: HeldStream | undefined;
    let keepalive: NodeJS.Timeout | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const stream: HeldStream = {
          sessionId: session.id,
          owner,
          scope: session.endpoint,
          write: (chunk) => {
            try {
              controller.enqueue(encoder.encode(chunk));
            } catch {
              stream.close();
            }
          },
          close: () => {
            if (!this.streams.delete(stream)) return;
            this.countOwner(stream.owner, -1);
            clearInterval(keepalive);
            try {
              controller.close();
            } catch {
              // already closed by the client
            }
          },
        };
        held = stream;
        this.streams.add(stream);
        this.countOwner(owner, 1);
        keepalive = setInterval(() => {
          stream.write(': keepalive\n\n');
          void this.heartbeat(stream);
        }, KEEPALIVE_MS);
        keepalive.unref();
        stream.write(': stream open\n\n');
      },
      cancel: () => held?.close(),
    });
    request.signal.addEventListener('abort', () => held?.close(), { once: true });
    return new Response(body, {
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' },
    });
  }

  /**
   * Marks the sessions of the held GET streams (all, or one) as in use (`SessionsService.heartbeat`,
   * written at most once per touch interval): a client that only listens keeps its session, which
   * is then never reclaimed as idle; a stream whose session has ended meanwhile is closed. Runs
   * with each keep-alive.
   */
  heartbeat(only?: HeldStream): Promise<void> {
    const streams = only ? [only] : [...this.streams];
    return Promise.all(
      streams.map((stream) =>
        this.sessions.heartbeat(stream.sessionId).then(
          (open) => (open ? undefined : stream.close()),
          () => undefined, // the database is unreachable: try again at the next keep-alive
        ),
      ),
    ).then(() => undefined);
  }

  /** Writes an SSE event to one GET stream of `sessionId` held here; false when there is none. */
  writeToSession(sessionId: string, event: string): boolean {
    for (const stream of this.streams) {
      if (stream.sessionId === sessionId) {
        stream.write(event);
        return true;
      }
    }
    return false;
  }

  /**
   * Something an upstream offers changed: tell the clients whose view includes it, one
   * `notifications/<kind>/list_changed` per kind that changed (all three are advertised).
   */
  private catalogChanged(server: string, kinds: readonly OfferingKind[]): void {
    const message = kinds.map((kind) => `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: `notifications/${kind}/list_changed` })}\n\n`).join('');
    for (const stream of this.streams) if (stream.scope === '' || stream.scope === server) stream.write(message);
    this.sdk.listChanged(server, kinds);
  }
}
