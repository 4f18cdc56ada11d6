import { Inject, Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS, isInitializeRequest, isInitializedNotification, isJsonContentType } from '@modelcontextprotocol/server';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { Principal } from '../../auth/principal.js';
import { SessionsService } from '../../sessions/sessions.service.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import { GATEWAY_INFO, gatewayCapabilities, gatewayInstructions } from '../gateway-server.js';
import { LegacySessions, SESSION_HEADER } from './legacy-sessions.js';

/** An answer written as is: status, headers (lower-case names, in the order the SDK path writes them), body. */
export interface LifecycleAnswer {
  status: number;
  headers: Record<string, string>;
  body?: string;
}

/**
 * The 2025-era revisions `initialize` negotiates, in the SDK's order of preference (its
 * `legacyProtocolVersions(SUPPORTED_PROTOCOL_VERSIONS)`: modern revisions start at 2026-07-28).
 */
const LEGACY_VERSIONS: readonly string[] = SUPPORTED_PROTOCOL_VERSIONS.filter((v) => v < '2026-07-28');
/**
 * The MCP-Protocol-Version values taken (or none): ones the SDK's transport accepts on a
 * session's request, and that its classifier does not take for modern traffic.
 */
const HEADER_VERSIONS = new Set<string>(LEGACY_VERSIONS);
/** The only members of a message the lifecycle path takes (anything else: the SDK's). */
const REQUEST_KEYS = new Set(['jsonrpc', 'id', 'method', 'params']);
const NOTIFICATION_KEYS = new Set(['jsonrpc', 'method', 'params']);
/** `initialize` params as clients send them; `_meta` or other members are left to the SDK. */
const INITIALIZE_PARAMS = new Set(['protocolVersion', 'capabilities', 'clientInfo']);
const CLIENT_INFO_KEYS = new Set(['name', 'version', 'title', 'description', 'websiteUrl', 'icons']);
const CLIENT_CAPABILITIES = new Set(['experimental', 'roots', 'sampling', 'elicitation', 'tasks', 'extensions']);
/** The SDK's per-request SSE answer headers (WebStandardStreamableHTTPServerTransport), sorted as web `Headers` iterate them. */
const SSE_HEADERS = { 'cache-control': 'no-cache, no-transform', connection: 'keep-alive', 'content-type': 'text/event-stream' };

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const onlyKeys = (v: Record<string, unknown>, allowed: Set<string>) => Object.keys(v).every((k) => allowed.has(k));

/**
 * The legacy (2025-era) session lifecycle without the SDK's per-request serving: `initialize`,
 * `notifications/initialized` and `DELETE` of a session — the requests every session opens
 * and ends with. Served by the SDK (`legacyStatelessFallback`), each built a web
 * Request/Response, a gateway `Server` and a transport: ~350 KB of garbage per session opened,
 * which is what made 1,000 idle sessions grow RSS by tens of MB (docs/benchmarks.md, "Idle
 * sessions"). The answers are those of the SDK path, to the byte:
 *
 * - `initialize` (MCP basic/lifecycle, "Initialization", "Version Negotiation": the requested
 *   revision if supported, else the latest supported 2025-era one): the session opened by
 *   {@link LegacySessions.open} (same row, same caps, same 429), then 200 with the SDK's SSE
 *   headers, `mcp-session-id` and one `event: message` whose data is
 *   `{"result":{protocolVersion,capabilities,serverInfo,instructions},"jsonrpc":"2.0","id":…}`
 *   — the scope's capabilities ({@link gatewayCapabilities}), {@link GATEWAY_INFO} and
 *   {@link gatewayInstructions}, as `createGatewayServer` gives them to the SDK's `Server`.
 * - `notifications/initialized` in a session the principal may use ({@link LegacySessions.sessionFor}):
 *   202, no body.
 * - `DELETE` of such a session: the session ends everywhere, 200, no body.
 *
 * Returns undefined for anything else or anything unusual (fast path off, a batch, members or
 * params beyond the common shape, an Accept or Content-Type the SDK would refuse, headers the
 * SDK's classifier does not take as legacy, no or an unknown session): the full path answers
 * it, errors included. Differential tests: `test/e2e/mcp-differential-lifecycle.test.ts`.
 */
@Injectable()
export class LegacyLifecycle {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly legacy: LegacySessions,
    private readonly sessions: SessionsService,
    private readonly upstreams: UpstreamServersService,
  ) {}

  /**
   * The answer, or undefined: serve it the full way. The caller has already refused a foreign
   * Host/Origin, an unknown scope and an unready replica; the guard has authenticated
   * `principal` (MCP_SESSION_AUTH_REQUIRE_FOR_SESSION applied). `clientAddress` is
   * `request.ip` (per-address session cap).
   */
  async answer(method: string, headers: IncomingHttpHeaders, body: unknown, scope: string, principal: Principal, clientAddress: string): Promise<LifecycleAnswer | undefined> {
    if (!this.config.mcp.fastPath) return undefined;
    if (method === 'DELETE') return this.end(headers, scope, principal);
    if (method !== 'POST' || !isPlainObject(body) || body.jsonrpc !== '2.0') return undefined;
    if (body.method !== 'initialize' && body.method !== 'notifications/initialized') return undefined;
    // What the SDK's transport refuses (406, 415) is answered by it.
    const accept = headers.accept;
    if (typeof accept !== 'string' || !accept.includes('application/json') || !accept.includes('text/event-stream')) return undefined;
    const contentType = headers['content-type'];
    if (typeof contentType !== 'string' || !isJsonContentType(contentType)) return undefined;
    const version = headers['mcp-protocol-version'];
    const mcpMethod = headers['mcp-method'];
    const mcpName = headers['mcp-name'];
    if (Array.isArray(version) || mcpMethod !== undefined || mcpName !== undefined) return undefined;
    if (version !== undefined && !HEADER_VERSIONS.has(version)) return undefined;
    // The SDK's classifier (`classifyInboundRequest`) takes a JSON-RPC message as legacy when its
    // params carry no `_meta` (so no envelope claim) and no modern revision is named in the
    // header: what is checked here and below, without its schema parsing.
    if (isPlainObject(body.params) && '_meta' in body.params) return undefined;
    return body.method === 'initialize' ? this.initialize(body, scope, principal, clientAddress) : this.initialized(body, headers, scope, principal);
  }

  private async initialize(body: Record<string, unknown>, scope: string, principal: Principal, clientAddress: string): Promise<LifecycleAnswer | undefined> {
    const id = body.id;
    if (typeof id !== 'string' && !Number.isSafeInteger(id)) return undefined;
    if (!onlyKeys(body, REQUEST_KEYS) || !isInitializeRequest(body)) return undefined;
    const params = body.params as unknown as Record<string, unknown>;
    if (!onlyKeys(params, INITIALIZE_PARAMS) || !isPlainObject(params.clientInfo) || !isPlainObject(params.capabilities)) return undefined;
    if (!onlyKeys(params.clientInfo, CLIENT_INFO_KEYS) || !onlyKeys(params.capabilities, CLIENT_CAPABILITIES)) return undefined;
    if (!Object.values(params.capabilities).every(isPlainObject)) return undefined;

    const opened = await this.legacy.open(body.params, scope, principal, clientAddress);
    if ('refused' in opened) {
      const error = JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: opened.refused.message }, id: null });
      return { status: 429, headers: { 'content-type': 'application/json', ...opened.refused.headers }, body: error };
    }
    const requested = body.params.protocolVersion;
    const instructions = gatewayInstructions(scope, this.upstreams.catalog(scope)?.instructions);
    const result = {
      protocolVersion: LEGACY_VERSIONS.includes(requested) ? requested : (LEGACY_VERSIONS[0] ?? LATEST_PROTOCOL_VERSION),
      capabilities: gatewayCapabilities(this.upstreams.subscribable(scope)),
      serverInfo: GATEWAY_INFO,
      ...(instructions ? { instructions } : {}),
    };
    return {
      status: 200,
      headers: { ...SSE_HEADERS, [SESSION_HEADER]: opened.token, 'x-accel-buffering': 'no' },
      body: `event: message\ndata: ${JSON.stringify({ result, jsonrpc: '2.0', id })}\n\n`,
    };
  }

  private async initialized(body: Record<string, unknown>, headers: IncomingHttpHeaders, scope: string, principal: Principal): Promise<LifecycleAnswer | undefined> {
    if (!onlyKeys(body, NOTIFICATION_KEYS) || (body.params !== undefined && !isPlainObject(body.params)) || !isInitializedNotification(body)) return undefined;
    const token = headers[SESSION_HEADER];
    if (typeof token !== 'string' || !token) return undefined;
    if (!(await this.legacy.sessionFor(token, scope, principal))) return undefined;
    return { status: 202, headers: {} };
  }

  /** DELETE of a session (MCP 2025-06-18 basic/transports, "Session Management"). */
  private async end(headers: IncomingHttpHeaders, scope: string, principal: Principal): Promise<LifecycleAnswer | undefined> {
    const token = headers[SESSION_HEADER];
    if (typeof token !== 'string' || !token) return undefined;
    const session = await this.legacy.sessionFor(token, scope, principal);
    if (!session) return undefined;
    await this.sessions.close(session);
    return { status: 200, headers: {} };
  }
}
