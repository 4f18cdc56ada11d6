import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import {
  PROTOCOL_VERSION_META_KEY,
  ProtocolError,
  SUPPORTED_PROTOCOL_VERSIONS,
  createMcpHandler,
  isInitializeRequest,
  isLegacyRequest,
  legacyStatelessFallback,
  validateHostHeader,
  validateOriginHeader,
  type LegacyHttpHandler,
  type McpHandlerRequestOptions,
  type McpHttpHandler,
  type McpRequestContext,
} from '@modelcontextprotocol/server';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { PENDING_PREFIX, PENDING_PRINCIPAL, SessionsService, TooManySessionsError, type LiveSession } from '../sessions/sessions.service.js';
import { UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { PoliciesService } from '../policies/policies.service.js';
import type { PolicyPrincipal } from '../policies/policy-evaluator.js';
import { isUnauthenticated, type Principal } from '../auth/principal.js';
import { SecretsService, secretOwner } from '../secrets/secrets.service.js';
import { callTool, createGatewayServer, type GatewayScope } from './gateway-server.js';

const SESSION_HEADER = 'mcp-session-id';
/** Bus topic: a legacy client cancelled `{ key }` (session hash + request id) on some replica. */
const CANCELLED = 'mcp.cancelled';
/** 2025-era revisions a session may name in MCP-Protocol-Version. */
const LEGACY_VERSIONS = new Set(SUPPORTED_PROTOCOL_VERSIONS.filter((v) => v < '2026'));
/** Methods the fast path answers itself (the bulk of steady-state traffic). */
const FAST_METHODS = new Set(['tools/call', 'tools/list', 'ping']);
const KEEPALIVE_MS = 15_000;
/** The subset of a principal the policy evaluator reads. */
const policySubject = (p: Principal): PolicyPrincipal => ({ userId: p.userId, apiKeyId: p.keyId, roles: p.roles, groups: p.groups });

/** A JSON-RPC error answered before any MCP processing (ids unknown: `null`). */
export function jsonRpcError(status: number, code: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}

interface Handlers {
  modern: McpHttpHandler;
  legacy: LegacyHttpHandler;
}

interface HeldStream {
  sessionId: string;
  scope: string;
  write(chunk: string): void;
  close(): void;
}

/**
 * The `/mcp` edge: validates Host and Origin, classifies each request into its protocol era,
 * and serves it.
 *
 * - Modern (2026-07-28, stateless): the SDK's `createMcpHandler` runs the spec's validation
 *   ladder (envelope, `MCP-Protocol-Version` / `Mcp-Method` / `Mcp-Name` against the body),
 *   `server/discover`, cache hints and `subscriptions/listen`, over a per-request gateway server.
 * - Legacy (2025-03-26 … 2025-11-25): sessions live in PostgreSQL ({@link SessionsService}), so
 *   any replica serves any session; each POST is then answered by the SDK's stateless legacy
 *   serving over the same gateway server. The GET notification stream and DELETE are served
 *   here, because a stateless SDK transport has neither.
 */
@Injectable()
export class McpEdgeService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly handlers = new Map<string, Handlers>();
  private readonly streams = new Set<HeldStream>();
  private readonly listenStreams = new Set<() => void>();
  /** In-flight legacy requests by `<session hash>:<request id>`, for notifications/cancelled. */
  private readonly inflight = new Map<string, AbortController>();
  private readonly unsubscribe: (() => void)[] = [];
  private readonly allowedHosts: string[];
  private readonly allowedOrigins: Set<string>;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly upstreams: UpstreamServersService,
    private readonly sessions: SessionsService,
    private readonly bus: ChangeBusService,
    private readonly policies: PoliciesService,
    private readonly secrets: SecretsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('McpEdge');
    this.allowedHosts = config.mcp.allowedHosts.map((h) => h.replace(/^\[|\]$/g, ''));
    this.allowedOrigins = new Set(config.mcp.allowedOrigins);
  }

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.upstreams.onToolsChanged((server) => this.catalogChanged(server)),
      this.sessions.onClosed((id) => {
        for (const stream of this.streams) if (stream.sessionId === id) stream.close();
      }),
      this.bus.subscribe<{ key?: string }>(CANCELLED, (event) => {
        if (!event.local && event.data?.key) this.inflight.get(event.data.key)?.abort();
      }),
    );
  }

  async beforeApplicationShutdown(): Promise<void> {
    for (const off of this.unsubscribe.splice(0)) off();
    this.endStreams();
    await Promise.all([...this.handlers.values()].map((h) => h.modern.close()));
  }

  /**
   * Ends every long-lived notification stream this replica holds (legacy GET streams, modern
   * `subscriptions/listen` streams). Called when shutdown begins: they never finish on their
   * own, and draining would otherwise wait for SHUTDOWN_TIMEOUT. Clients reconnect elsewhere.
   */
  endStreams(): void {
    for (const stream of this.streams) stream.close();
    for (const end of this.listenStreams) end();
    this.listenStreams.clear();
  }

  /** Registers a modern `subscriptions/listen` exchange so {@link endStreams} can end it. */
  holdListenStream(end: () => void): () => void {
    this.listenStreams.add(end);
    return () => this.listenStreams.delete(end);
  }

  /**
   * Serves one HTTP request to `/mcp` (scope `''`) or `/mcp/<scope>`. `parsedBody` is the
   * JSON body Fastify already parsed (undefined for GET/DELETE).
   */
  async handle(request: Request, parsedBody: unknown, scope: string, principal: Principal, abort?: AbortController): Promise<Response> {
    const rejected = this.checkHostAndOrigin(request);
    if (rejected) return rejected;
    if (scope !== '' && !this.upstreams.catalog(scope)) {
      return jsonRpcError(404, -32600, `MCP server "${scope}" does not exist or is disabled`);
    }
    const handlers = this.handlersFor(scope);
    // The principal travels to the per-request gateway server as the SDK's pass-through authInfo.
    const authInfo = { token: '', clientId: principal.id, scopes: principal.scopes, extra: { principal } };
    if (request.method === 'POST' && !(await isLegacyRequest(request, parsedBody))) {
      return handlers.modern.fetch(request, { parsedBody, authInfo });
    }
    return this.legacy(request, parsedBody, scope, handlers.legacy, principal, authInfo, abort);
  }

  /**
   * MCP transports spec (2025-06-18+, "Security Warning"): servers MUST validate the Origin
   * header to prevent DNS rebinding; an invalid Origin is answered 403. Host is checked too,
   * since a rebinding attack reaches us with the attacker's host name.
   */
  private checkHostAndOrigin(request: Request): Response | undefined {
    const problem = this.hostOriginProblem(request.headers.get('host') ?? undefined, request.headers.get('origin') ?? undefined);
    return problem ? jsonRpcError(403, -32000, problem) : undefined;
  }

  private hostOriginProblem(host: string | undefined, origin: string | undefined): string | undefined {
    if (!this.config.mcp.dnsRebindingProtection) return undefined;
    if (!validateHostHeader(host, this.allowedHosts).ok) return `Forbidden: Host ${JSON.stringify(host ?? '')} is not allowed (HTTP_ALLOWED_HOSTS)`;
    // An Origin is accepted when configured exactly, or when its host name is an allowed host
    // (any port): the SDK's rule and the conformance suite's — localhost, 127.0.0.1, [::1].
    if (origin !== undefined && !this.allowedOrigins.has(origin) && !validateOriginHeader(origin, this.allowedHosts).ok) {
      return `Forbidden: Origin ${JSON.stringify(origin)} is not allowed (HTTP_CORS_ORIGINS)`;
    }
    return undefined;
  }

  private handlersFor(scope: string): Handlers {
    let handlers = this.handlers.get(scope);
    if (!handlers) {
      const factory = (ctx: McpRequestContext) => createGatewayServer(this.gateway(scope, (ctx.authInfo?.extra?.principal as Principal | undefined) ?? null));
      const onerror = (error: Error) => this.logger.debug({ scope, error: error.message }, 'MCP request rejected');
      handlers = {
        modern: createMcpHandler(factory, { legacy: 'reject', onerror }),
        legacy: legacyStatelessFallback(factory, onerror, { maxRequestBodySize: this.config.http.maxRequestBytes }),
      };
      this.handlers.set(scope, handlers);
    }
    return handlers;
  }

  private async legacy(
    request: Request,
    body: unknown,
    scope: string,
    serve: LegacyHttpHandler,
    principal: Principal,
    authInfo: McpHandlerRequestOptions['authInfo'],
    abort?: AbortController,
  ): Promise<Response> {
    const token = request.headers.get(SESSION_HEADER);

    if (request.method === 'POST' && isInitializeRequest(body)) {
      const params = body.params;
      let created: { token: string; session: LiveSession };
      try {
        created = await this.sessions.create({
          // Opened without credentials (MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=false): bound to
          // whoever first authenticates on it.
          principal: isUnauthenticated(principal) ? PENDING_PRINCIPAL : principal.id,
          endpoint: scope,
          protocolVersion: params.protocolVersion,
          clientInfo: params.clientInfo,
          capabilities: params.capabilities,
        });
      } catch (error) {
        if (error instanceof TooManySessionsError) return jsonRpcError(429, -32000, error.message);
        throw error;
      }
      const response = await serve(request, { parsedBody: body, authInfo });
      if (response.status !== 200) {
        await this.sessions.close(created.session);
        return response;
      }
      const headers = new Headers(response.headers);
      headers.set('Mcp-Session-Id', created.token);
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
        const cancelled = this.cancellation(session, body);
        if (cancelled) return cancelled;
        return this.tracked(session, body, abort, () => serve(request, { parsedBody: body, authInfo }));
      }
      case 'DELETE':
        await this.sessions.close(session);
        return new Response(null, { status: 200 });
      case 'GET':
        return this.openStream(request, session);
      default:
        return jsonRpcError(405, -32000, 'Method not allowed', { allow: 'GET, POST, DELETE' });
    }
  }

  /**
   * The fast path: answers the steady-state calls of a validated legacy session — `tools/call`
   * without a progress token, `tools/list`, `ping` — as plain JSON straight from the raw
   * request, without a web Request/Response or an SDK server and transport per call
   * (measured: that per-request SDK serving costs more than the whole forward). Returns the
   * JSON text, or undefined for anything else or anything unusual (no session header, a
   * modern or unsupported protocol version, a batch, a progress token, malformed params, a
   * client that does not accept JSON, a foreign Host/Origin, an unknown session): the full
   * path then answers it, with the SDK owning the spec's validation and error statuses.
   */
  async tryFast(
    method: string,
    headers: IncomingHttpHeaders,
    body: unknown,
    scope: string,
    abort: AbortController,
    principal: Principal,
  ): Promise<string | undefined> {
    if (method !== 'POST') return undefined;
    const token = headers[SESSION_HEADER];
    const version = headers['mcp-protocol-version'];
    if (typeof token !== 'string' || typeof version !== 'string' || !LEGACY_VERSIONS.has(version)) return undefined;
    if (!(headers.accept ?? '').includes('application/json') || !(headers['content-type'] ?? '').startsWith('application/json')) return undefined;
    if (this.hostOriginProblem(headers.host, headers.origin)) return undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
    const message = body as { jsonrpc?: unknown; id?: unknown; method?: unknown; params?: unknown };
    if (message.jsonrpc !== '2.0' || typeof message.method !== 'string' || !FAST_METHODS.has(message.method)) return undefined;
    if (typeof message.id !== 'string' && typeof message.id !== 'number') return undefined;
    const params = (message.params ?? {}) as { name?: unknown; arguments?: unknown; _meta?: Record<string, unknown> };
    if (typeof params !== 'object' || params === null) return undefined;
    // A progress token needs a streamed answer; an envelope claim makes it modern traffic.
    if (params._meta && (params._meta.progressToken !== undefined || PROTOCOL_VERSION_META_KEY in params._meta)) return undefined;
    if (message.method === 'tools/call') {
      if (typeof params.name !== 'string') return undefined;
      if (params.arguments !== undefined && (typeof params.arguments !== 'object' || params.arguments === null)) return undefined;
    }
    const session = await this.sessionFor(token, scope, principal);
    if (!session) return undefined;
    const catalog = this.upstreams.catalog(scope);
    if (!catalog) return undefined;

    // The list is serialized once per catalog change, not per request (200 tools ≈ 60 KB).
    if (message.method === 'tools/list') {
      const { toolsJson } = this.policies.view(catalog, scope, policySubject(principal));
      return `{"jsonrpc":"2.0","id":${JSON.stringify(message.id)},"result":{"tools":${toolsJson}}}`;
    }
    let result: unknown;
    try {
      if (message.method === 'ping') result = {};
      else {
        const call = params as { name: string; arguments?: Record<string, unknown> };
        result = await this.tracked(session, message, abort, () => callTool(this.gateway(scope, principal), scope, call, { signal: abort.signal }));
      }
    } catch (error) {
      if (abort.signal.aborted) {
        return JSON.stringify({ jsonrpc: '2.0', id: message.id, error: { code: -32603, message: 'Request cancelled by the client' } });
      }
      if (!(error instanceof ProtocolError)) throw error;
      const payload = { code: error.code, message: error.message, ...(error.data === undefined ? {} : { data: error.data }) };
      return JSON.stringify({ jsonrpc: '2.0', id: message.id, error: payload });
    }
    return JSON.stringify({ jsonrpc: '2.0', id: message.id, result });
  }

  /**
   * The session `token` names, if `principal` may use it: the principal that opened it (or
   * first authenticated on it). Anyone else — other credentials, or none on a bound session —
   * gets undefined, answered 404 like an unknown id, so a leaked id reveals nothing.
   */
  private async sessionFor(token: string, scope: string, principal: Principal): Promise<LiveSession | undefined> {
    const session = await this.sessions.resolve(token, scope);
    if (!session) return undefined;
    if (session.principal === principal.id) return session;
    if (!session.principal.startsWith(PENDING_PREFIX)) return undefined;
    if (isUnauthenticated(principal)) return session;
    return (await this.sessions.bind(session, principal.id)) ? session : undefined;
  }

  /** What a gateway server needs for one request; with no principal nothing is allowed. */
  private gateway(scope: string, principal: Principal | null): GatewayScope {
    const subject: PolicyPrincipal = principal ? policySubject(principal) : { userId: null, apiKeyId: null, roles: [], groups: [] };
    const caller = principal ? { owner: secretOwner(principal), userId: principal.userId, email: principal.email } : { owner: null, userId: null, email: null };
    return { scope, upstreams: this.upstreams, policies: this.policies, principal: subject, secrets: this.secrets, caller };
  }

  /** Runs a legacy request so that a later notifications/cancelled for its id can abort it. */
  private async tracked<T>(session: LiveSession, body: unknown, abort: AbortController | undefined, run: () => Promise<T>): Promise<T> {
    const id = (body as { id?: unknown } | null)?.id;
    if (!abort || (typeof id !== 'string' && typeof id !== 'number')) return run();
    const key = `${session.id}:${JSON.stringify(id)}`;
    this.inflight.set(key, abort);
    try {
      return await run();
    } finally {
      if (this.inflight.get(key) === abort) this.inflight.delete(key);
    }
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

  /** The legacy server-to-client stream: list-changed notifications, and keep-alives. */
  private openStream(request: Request, session: LiveSession): Response {
    if (!(request.headers.get('accept') ?? '').includes('text/event-stream')) {
      return jsonRpcError(406, -32000, 'Not Acceptable: the GET stream needs Accept: text/event-stream');
    }
    const encoder = new TextEncoder();
    let held: HeldStream | undefined;
    let keepalive: NodeJS.Timeout | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const stream: HeldStream = {
          sessionId: session.id,
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
        keepalive = setInterval(() => stream.write(': keepalive\n\n'), KEEPALIVE_MS);
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

  /** Something an upstream offers changed: tell the clients whose view includes it. */
  private catalogChanged(server: string): void {
    const message = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })}\n\n`;
    for (const stream of this.streams) if (stream.scope === '' || stream.scope === server) stream.write(message);
    for (const [scope, handlers] of this.handlers) {
      if (scope === '' || scope === server) handlers.modern.notify.toolsChanged();
    }
  }
}
