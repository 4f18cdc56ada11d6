import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { isInitializeRequest, type LegacyHttpHandler, type McpHandlerRequestOptions } from '@modelcontextprotocol/server';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { PENDING_PREFIX, PENDING_PRINCIPAL, SessionsService, TooManySessionsError, type LiveSession, type SessionInit } from '../../sessions/sessions.service.js';
import { isUnauthenticated, type Principal } from '../../auth/principal.js';
import { jsonRpcError } from './json-rpc.js';
import { NotificationFanout, streamOwner } from './notification-fanout.js';
import { ClientRequests, isClientAnswer } from '../pipeline/server-requests.js';

export const SESSION_HEADER = 'mcp-session-id';
/** The first revision without JSON-RPC batches (MCP changelog 2025-06-18: "Remove support for JSON-RPC batching"). */
const BATCHLESS_SINCE = '2025-06-18';

/**
 * The answer to a JSON-RPC batch in a session of `version`, or undefined where batches exist
 * (2025-03-26 only: they were added in 2025-03-26 and removed in 2025-06-18).
 */
export function batchRefusal(version: string): Response | undefined {
  if (version < BATCHLESS_SINCE) return undefined;
  return jsonRpcError(400, -32600, `Invalid Request: JSON-RPC batches are not part of MCP protocol version ${version} (removed in ${BATCHLESS_SINCE}); send one message per request`);
}

/** Bus topic: a legacy client cancelled `{ key }` (session hash + request id) on some replica. */
const CANCELLED = 'mcp.cancelled';

/**
 * The 2025-era session transport (streamable HTTP, 2025-03-26 … 2025-11-25) around the SDK's
 * stateless legacy serving: `initialize` opens a session in PostgreSQL (any replica serves any
 * session), later requests must name it (400 without, 404 for an unknown, ended or foreign
 * one), `notifications/cancelled` aborts the named request wherever it runs, `DELETE` ends the
 * session everywhere, `GET` opens the notification stream ({@link NotificationFanout}).
 */
@Injectable()
export class LegacySessions implements OnApplicationBootstrap, BeforeApplicationShutdown {
  /** In-flight legacy requests by `<session hash>:<request id>`, for notifications/cancelled. */
  private readonly inflight = new Map<string, AbortController>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly sessions: SessionsService,
    private readonly bus: ChangeBusService,
    private readonly fanout: NotificationFanout,
    private readonly clientRequests: ClientRequests,
  ) {}

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.bus.subscribe<{ key?: string }>(CANCELLED, (event) => {
        if (!event.local && event.data?.key) this.inflight.get(event.data.key)?.abort();
      }),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Serves one legacy-era HTTP request (`serve` answers a POST with the SDK's stateless legacy serving). */
  async handle(
    request: Request,
    body: unknown,
    scope: string,
    serve: LegacyHttpHandler,
    principal: Principal,
    authInfo: McpHandlerRequestOptions['authInfo'],
    abort?: AbortController,
    clientAddress?: string,
  ): Promise<Response> {
    const token = request.headers.get(SESSION_HEADER);

    if (request.method === 'POST' && isInitializeRequest(body)) {
      const opened = await this.open(body.params, scope, principal, clientAddress);
      if ('refused' in opened) return jsonRpcError(429, -32000, opened.refused.message, opened.refused.headers);
      const response = await serve(request, { parsedBody: body, authInfo });
      if (response.status !== 200) {
        await this.sessions.close(opened.session);
        return response;
      }
      const headers = new Headers(response.headers);
      headers.set('Mcp-Session-Id', opened.token);
      return new Response(response.body, { status: response.status, headers });
    }

    // Streamable HTTP (2025-03-26+): a request without a session id, other than initialize,
    // is 400; an unknown or ended session is 404, so the client starts a new one.
    if (!token) return jsonRpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required (send initialize first)');
    // A session belongs to the principal that opened it; anyone else gets the same answer as
    // for an unknown session, so the id's existence is not revealed.
    const session = await this.sessionFor(token, scope, principal);
    if (!session) return jsonRpcError(404, -32001, 'Session not found');

    switch (request.method) {
      case 'POST': {
        // The client's answer to a request Gatehouse sent it (sampling, elicitation, roots).
        if (isClientAnswer(body)) {
          this.clientRequests.answer(session.id, body);
          return new Response(null, { status: 202 });
        }
        if (Array.isArray(body)) {
          const refused = batchRefusal(request.headers.get('mcp-protocol-version') ?? session.protocolVersion);
          if (refused) return refused;
        }
        const cancelled = this.cancellation(session, body);
        if (cancelled) return cancelled;
        // The SDK-served handlers reach the session (for requests back to this client) through authInfo.
        const withSession = { ...authInfo!, extra: { ...authInfo?.extra, session: { id: session.id, capabilities: session.capabilities } } };
        return this.tracked(session, body, abort, () => serve(request, { parsedBody: body, authInfo: withSession }));
      }
      case 'DELETE':
        await this.sessions.close(session);
        return new Response(null, { status: 200 });
      case 'GET':
        return this.fanout.openStream(request, session, streamOwner(principal, clientAddress));
      default:
        return jsonRpcError(405, -32000, 'Method not allowed', { allow: 'GET, POST, DELETE' });
    }
  }

  /**
   * Opens the session of a legacy `initialize` (`params`: its validated params) in PostgreSQL:
   * the session row (principal, or pending when opened without credentials; scope; requested
   * protocol version, client info and capabilities). At the principal's or address's cap
   * (HTTP_MAX_CONCURRENT_SESSIONS / HTTP_MAX_SESSIONS_PER_ADDRESS) with nothing reclaimable:
   * `refused`, the message and headers (`retry-after`, seconds) of the 429 answer. Other errors
   * are thrown. Shared by the SDK-served `initialize` and {@link LegacyLifecycle}.
   */
  async open(
    params: { protocolVersion: string; clientInfo: unknown; capabilities: unknown },
    scope: string,
    principal: Principal,
    clientAddress: string | undefined,
  ): Promise<{ token: string; session: LiveSession } | { refused: { message: string; headers: Record<string, string> } }> {
    try {
      return await this.sessions.create({
        // Opened without credentials (MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=false): bound to
        // whoever first authenticates on it.
        principal: isUnauthenticated(principal) ? PENDING_PRINCIPAL : principal.id,
        endpoint: scope,
        protocolVersion: params.protocolVersion,
        clientInfo: params.clientInfo as SessionInit['clientInfo'],
        capabilities: params.capabilities as SessionInit['capabilities'],
        // Without credentials, or as the anonymous principal of `none` (every client is that
        // one principal): capped per client address, not per principal.
        withoutCredentials: principal.method === 'none',
        clientAddress,
      });
    } catch (error) {
      if (error instanceof TooManySessionsError) {
        return { refused: { message: error.message, headers: { 'retry-after': String(Math.ceil(error.retryAfterMs / 1000)) } } };
      }
      throw error;
    }
  }

  /**
   * The session `token` names, if `principal` may use it: the principal that opened it (or
   * first authenticated on it). Anyone else — other credentials, or none on a bound session —
   * gets undefined, answered 404 like an unknown id, so a leaked id reveals nothing.
   */
  async sessionFor(token: string, scope: string, principal: Principal): Promise<LiveSession | undefined> {
    const session = await this.sessions.resolve(token, scope);
    if (!session) return undefined;
    if (session.principal === principal.id) return session;
    if (!session.principal.startsWith(PENDING_PREFIX)) return undefined;
    if (isUnauthenticated(principal)) return session;
    return (await this.sessions.bind(session, principal.id)) ? session : undefined;
  }

  /**
   * {@link sessionFor}'s answer when it can be given without I/O — the cached, open session,
   * not due for a touch, already bound to `principal` (the steady state of every session) —
   * else undefined: then ask {@link sessionFor}, which decides everything else (unknown,
   * expired, foreign, pending binding).
   */
  sessionForNow(token: string, scope: string, principal: Principal): LiveSession | undefined {
    const session = this.sessions.cached(token, scope);
    return session?.principal === principal.id ? session : undefined;
  }

  /**
   * Runs a legacy request so that a later notifications/cancelled for its id can abort it: the
   * request's `abort` is findable under `<session id>:<JSON id>` until `run`'s promise settles
   * (its own reaction, registered before the caller's, removes it). Returns `run`'s promise;
   * throws what `run` throws synchronously (callers are async functions: a rejection to theirs).
   */
  tracked<T>(session: LiveSession, body: unknown, abort: AbortController | undefined, run: () => Promise<T>): Promise<T> {
    const id = (body as { id?: unknown } | null)?.id;
    if (!abort || (typeof id !== 'string' && typeof id !== 'number')) return run();
    const key = this.track(session, id, abort);
    const untrack = () => this.untrack(key, abort);
    let running: Promise<T>;
    try {
      running = run();
    } catch (error) {
      untrack();
      throw error;
    }
    running.then(untrack, untrack);
    return running;
  }

  /**
   * {@link tracked} in two steps, for a caller that runs the request in its own async function
   * (the fast path: no closure and no extra promise per call): from now on a
   * notifications/cancelled for `id` on `session` aborts `abort`, until {@link untrack} with
   * the key returned here — which the caller must call once the request is over, before it
   * answers (in a `finally`).
   */
  track(session: LiveSession, id: string | number, abort: AbortController): string {
    const key = `${session.id}:${JSON.stringify(id)}`;
    this.inflight.set(key, abort);
    return key;
  }

  /** The request {@link track} returned `key` for is over (a later request reusing its id keeps its own entry). */
  untrack(key: string, abort: AbortController): void {
    if (this.inflight.get(key) === abort) this.inflight.delete(key);
  }

  /**
   * notifications/cancelled on a legacy session (MCP basic/utilities/cancellation): abort the
   * named request wherever it runs — here, or on the replica that holds it (change bus). The
   * SDK's per-request legacy serving cannot do this: the notification reaches a fresh server
   * that never saw the request.
   */
  private cancellation(session: LiveSession, body: unknown): Response | undefined {
    const message = body as { method?: unknown; params?: { requestId?: unknown } } | null;
    if (message?.method !== 'notifications/cancelled') return undefined;
    const requestId = message.params?.requestId;
    if (typeof requestId === 'string' || typeof requestId === 'number') {
      const key = `${session.id}:${JSON.stringify(requestId)}`;
      const local = this.inflight.get(key);
      if (local) local.abort();
      else void this.bus.publish(CANCELLED, { key }).catch(() => undefined);
    }
    return new Response(null, { status: 202 });
  }
}
