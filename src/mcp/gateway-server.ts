import { CLIENT_CAPABILITIES_META_KEY, Server, type JSONRPCMessage, type ServerContext } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import type { McpOperationPipeline } from './pipeline/mcp-operation-pipeline.js';
import { MCP_OPERATION_KINDS, type McpEra, type McpParams } from './pipeline/mcp-operation.js';
import type { CallingClient } from './pipeline/server-requests.js';

/** The legacy session an SDK-served 2025-era request belongs to (passed as `authInfo.extra.session`). */
export interface ServedSession {
  id: string;
  capabilities?: Record<string, unknown>;
}

export const GATEWAY_INFO = { name: 'gatehouse', title: 'Gatehouse MCP gateway', version: '0.1.0' };

/** Capabilities the gateway announces (`initialize`, `server/discover`); `resources.subscribe` is added per scope ({@link gatewayCapabilities}). */
export const GATEWAY_CAPABILITIES = {
  tools: { listChanged: true },
  prompts: { listChanged: true },
  resources: { listChanged: true },
  completions: {},
  logging: {},
};

/**
 * The capabilities of one scope: {@link GATEWAY_CAPABILITIES}, with `resources.subscribe: true`
 * where subscribing works — on `/mcp` when at least one upstream declares it, on
 * `/mcp/<server>` when that upstream does (MCP spec, server/resources "Capabilities"). It
 * governs 2025-era `resources/subscribe` and 2026-07-28 `resourceSubscriptions` alike (the
 * SDK honors the latter only when it is declared).
 */
export function gatewayCapabilities(subscribable: boolean): typeof GATEWAY_CAPABILITIES {
  return subscribable ? { ...GATEWAY_CAPABILITIES, resources: { listChanged: true, subscribe: true } as typeof GATEWAY_CAPABILITIES.resources } : GATEWAY_CAPABILITIES;
}

/** Cache hints for modern list results (2026-07-28 `ttlMs` / `cacheScope`). */
export const CACHE_HINTS = {
  'tools/list': { ttlMs: 30_000, cacheScope: 'private' },
  'prompts/list': { ttlMs: 30_000, cacheScope: 'private' },
  'resources/list': { ttlMs: 30_000, cacheScope: 'private' },
  'resources/templates/list': { ttlMs: 30_000, cacheScope: 'private' },
  'server/discover': { ttlMs: 300_000, cacheScope: 'public' },
} as const;

/** What one SDK-served exchange needs. */
export interface GatewayScope {
  /** `''` for the aggregated `/mcp`, else the server name of `/mcp/<server>`. */
  scope: string;
  pipeline: McpOperationPipeline;
  principal: Principal;
  era: McpEra;
  /** 2025 era: the request's session (its id and the capabilities its client declared). */
  session?: ServedSession;
  /** The upstreams' instructions as the scope's catalog passes them on (`Catalog.instructions`). */
  upstreamInstructions?: string;
  /** Whether resource subscriptions work on this scope (see {@link gatewayCapabilities}). */
  subscribable?: boolean;
}

/** Requests whose upstream may talk back to the calling client (requests, log messages), or that act on its session. */
const WITH_CLIENT = new Set<string>(['tools/call', 'prompts/get', 'resources/read', 'completion/complete', 'logging/setLevel', 'resources/subscribe', 'resources/unsubscribe']);

/**
 * The `instructions` of the gateway's initialize / server/discover result: on `/mcp`, how names
 * are formed there, then each upstream's instructions under its server's heading; on
 * `/mcp/<server>`, the upstream's own instructions as they are (a line naming the server when
 * it has none).
 */
export function gatewayInstructions(scope: string, upstreamInstructions: string | undefined): string {
  if (scope !== '') return upstreamInstructions ?? `Gatehouse endpoint for the "${scope}" MCP server.`;
  const own = 'Gatehouse aggregates the team’s MCP servers. Tool and prompt names are <server>__<name>; resource URIs are gatehouse://<server>/<uri>.';
  return upstreamInstructions ? `${own}\n\n${upstreamInstructions}` : own;
}


/**
 * Builds the SDK `Server` that answers one SDK-served exchange (modern request, or a legacy
 * POST). It holds no state: every handler hands its request to the {@link McpOperationPipeline}
 * (classify → authorize → hooks → route → call), so both eras and the fast path decide alike.
 */
export function createGatewayServer({ scope, pipeline, principal, era, session, upstreamInstructions, subscribable = false }: GatewayScope): Server {
  const server = new Server(GATEWAY_INFO, {
    capabilities: gatewayCapabilities(subscribable),
    instructions: gatewayInstructions(scope, upstreamInstructions),
    cacheHints: CACHE_HINTS,
  });
  // Every request method the gateway answers is an SDK handler that is the pipeline (ping replaces
  // the SDK's own, so hooks see it too).
  for (const kind of MCP_OPERATION_KINDS) {
    // The SDK has validated `request.params` against the method's schema.
    server.setRequestHandler(kind, ((request: { params?: unknown }, ctx: ServerContext) =>
      pipeline.run({
        kind,
        scope,
        principal,
        params: (request.params ?? {}) as McpParams[typeof kind],
        era,
        path: 'sdk',
        signal: ctx.mcpReq.signal,
        notify: (params) => ctx.mcpReq.notify({ method: 'notifications/progress', params: params }),
        client: WITH_CLIENT.has(kind) ? callingClient(server, ctx, era, session) : undefined,
      })) as never);
  }
  return server;
}

/**
 * The calling client of one SDK-served request: 2025 era — its session, and `send`, which writes
 * a request on this request's own SSE response stream (the transport routes it by
 * `relatedRequestId`; MCP spec 2025-11-25, basic/transports); 2026-07-28 — the capabilities of
 * the request's `_meta` envelope and the MRTR answers the SDK lifted out of its params.
 */
function callingClient(server: Server, ctx: ServerContext, era: McpEra, session: ServedSession | undefined): CallingClient {
  if (era === 'legacy') {
    const relatedRequestId = ctx.mcpReq.id;
    return {
      capabilities: session?.capabilities,
      sessionId: session?.id,
      send: async (message) => {
        const transport = server.transport;
        if (!transport) throw new Error('the response stream is closed');
        await transport.send(message as JSONRPCMessage, { relatedRequestId });
      },
      notify: (method, params) => void ctx.mcpReq.notify({ method, params }).catch(() => undefined),
    };
  }
  const state = ctx.mcpReq.requestState<unknown>();
  return {
    capabilities: ctx.mcpReq.envelope?.[CLIENT_CAPABILITIES_META_KEY as never],
    inputResponses: ctx.mcpReq.inputResponses,
    requestState: typeof state === 'string' ? state : undefined,
    notify: (method, params) => void ctx.mcpReq.notify({ method, params }).catch(() => undefined),
  };
}
