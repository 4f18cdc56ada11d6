import { ProtocolError, ProtocolErrorCode, Server, type CallToolResult } from '@modelcontextprotocol/server';
import type { Client } from '@modelcontextprotocol/client';
import type { UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { NAME_SEPARATOR, type Catalog, type Target } from '../upstreams/catalog.js';
import type { PoliciesService } from '../policies/policies.service.js';
import type { PolicyOperation, PolicyPrincipal } from '../policies/policy-evaluator.js';
import type { Caller } from '../secrets/placeholders.js';
import type { SecretsService } from '../secrets/secrets.service.js';
import { routeCall } from './upstream-route.js';

export const GATEWAY_INFO = { name: 'gatehouse', title: 'Gatehouse MCP gateway', version: '0.1.0' };

/** What a per-request server instance needs: the scope it serves and the registry. */
export interface GatewayScope {
  /** `''` for the aggregated `/mcp`, else the server name of `/mcp/<server>`. */
  scope: string;
  upstreams: UpstreamServersService;
  policies: PoliciesService;
  principal: PolicyPrincipal;
  secrets: SecretsService;
  /** Whose secrets and identity fill a per-user server's placeholders. */
  caller: Caller;
}

/** JSON-RPC error code for an operation a policy denies (implementation-defined server range). */
export const POLICY_DENIED = -32003;

/** Throws the JSON-RPC error that names the policy, unless `principal` may do it. */
export function authorize(policies: PoliciesService, principal: PolicyPrincipal, operation: PolicyOperation, target: Target): void {
  const name = `${target.server}${NAME_SEPARATOR}${target.name}`;
  const decision = policies.decide(principal, operation, name);
  if (decision.allowed) return;
  const why =
    decision.by === 'default'
      ? 'no policy allows it and GATEHOUSE_POLICY_DEFAULT is deny'
      : `denied by policy ${decision.by.id}${decision.by.description ? ` (${decision.by.description})` : ''}`;
  throw new ProtocolError(POLICY_DENIED, `Forbidden: ${operation} on "${name}" ${why}`, {
    policyId: decision.by === 'default' ? null : decision.by.id,
  });
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 500);

/** A tool call that cannot reach its upstream: a result the model can read, not a protocol error. */
function upstreamFailure(server: string, problem: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: `Upstream MCP server "${server}" failed: ${problem}` }] };
}

function isTimeout(error: unknown): boolean {
  return error instanceof Error && /timed? ?out/i.test(error.message);
}

/**
 * `tools/call` for `scope`: resolve the (namespaced) name, forward to the upstream. An unknown
 * name is a protocol error (-32602); an upstream that is down, crashed or too slow becomes an
 * `isError` result naming it (MCP spec, server/tools: errors in the tool execution are
 * reported in the result, so the model can see them). Shared by the SDK-served path and the
 * edge's fast path.
 */
export async function callTool(
  { upstreams, policies, principal, secrets, caller }: Omit<GatewayScope, 'scope'>,
  scope: string,
  params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
  options: { signal?: AbortSignal; notify?: (progress: Record<string, unknown>) => void },
): Promise<CallToolResult> {
  const catalog = upstreams.catalog(scope);
  if (!catalog) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, `MCP server "${scope}" does not exist or is disabled`);
  const target = catalog.resolveTool(params.name);
  if (!target) {
    const hint = scope === '' ? ' Names on this endpoint are <server>__<tool>; see tools/list.' : '';
    throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool "${params.name}".${hint}`);
  }
  authorize(policies, principal, 'tools/call', target);
  const route = await routeCall(upstreams, secrets, caller, target.server);
  if (route && 'problem' in route) return { isError: true, content: [{ type: 'text', text: route.problem }] };
  const connection = route?.connection;
  try {
    if (!connection || !(await connection.ready())) {
      const status = connection?.getStatus();
      return upstreamFailure(target.server, status?.lastError ?? `it is ${status?.state ?? 'not connected'}`);
    }
    const progressToken = params._meta?.progressToken;
    // Injected arguments overwrite whatever the client sent under those names.
    const args = route.inject && Object.keys(route.inject).length > 0 ? { ...params.arguments, ...route.inject } : params.arguments;
    return await connection.callTool(
      { name: target.name, arguments: args, ...(progressToken === undefined ? {} : { _meta: { progressToken } }) },
      { signal: options.signal, onProgress: progressToken === undefined ? undefined : options.notify },
    );
  } catch (error) {
    if (options.signal?.aborted) throw error;
    if (isTimeout(error)) return upstreamFailure(target.server, `no answer within ${connection!.server.timeoutMs} ms`);
    if (error instanceof ProtocolError) throw new ProtocolError(error.code, `Upstream MCP server "${target.server}": ${error.message}`, error.data);
    return upstreamFailure(target.server, errorText(error));
  } finally {
    route?.release();
  }
}

/**
 * Builds the SDK `Server` that answers one request (modern era) or one legacy request. It holds
 * no state of its own: every handler reads the replica's cached catalog and forwards to the
 * upstream's live SDK client, so building one costs a few handler registrations.
 *
 * Protocol errors from an upstream keep their JSON-RPC code and gain the server's name; a
 * tool call whose upstream is down, crashed or too slow becomes an `isError` result naming
 * the server (MCP spec, server/tools: "errors in the tool execution are reported in the
 * result"), so the model can see and react to it. Nothing ever waits past the server's
 * `timeoutMs`.
 */
export function createGatewayServer(gateway: GatewayScope): Server {
  const { scope, upstreams, policies, principal, secrets, caller } = gateway;
  const server = new Server(GATEWAY_INFO, {
    capabilities: {
      tools: { listChanged: true },
      prompts: { listChanged: true },
      resources: { listChanged: true },
      completions: {},
      logging: {},
    },
    instructions:
      scope === ''
        ? 'Gatehouse aggregates the team’s MCP servers. Tool and prompt names are <server>__<name>; resource URIs are gatehouse://<server>/<uri>.'
        : `Gatehouse endpoint for the "${scope}" MCP server.`,
    cacheHints: {
      'tools/list': { ttlMs: 30_000, cacheScope: 'private' },
      'prompts/list': { ttlMs: 30_000, cacheScope: 'private' },
      'resources/list': { ttlMs: 30_000, cacheScope: 'private' },
      'resources/templates/list': { ttlMs: 30_000, cacheScope: 'private' },
      'server/discover': { ttlMs: 300_000, cacheScope: 'public' },
    },
  });

  const catalog = (): Catalog => {
    const c = upstreams.catalog(scope);
    if (!c) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, `MCP server "${scope}" does not exist or is disabled`);
    return c;
  };
  /** The caller's client for `target`'s server; `release` when the exchange is over. */
  const clientFor = async (target: Target): Promise<{ client: Client; timeout: number; release: () => void }> => {
    const route = await routeCall(upstreams, secrets, caller, target.server);
    if (route && 'problem' in route) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, route.problem);
    const connection = route?.connection;
    const client = await connection?.ready();
    if (!connection || !client) {
      route?.release();
      const status = connection?.getStatus();
      throw new ProtocolError(
        ProtocolErrorCode.InternalError,
        `Upstream MCP server "${target.server}" is unavailable${status?.lastError ? `: ${status.lastError}` : ` (${status?.state ?? 'unknown'})`}`,
      );
    }
    return { client, timeout: connection.server.timeoutMs, release: route.release };
  };
  /** Re-raises an upstream failure as a protocol error that names the server. */
  const named = (target: Target, error: unknown): never => {
    if (error instanceof ProtocolError) {
      throw new ProtocolError(error.code, `Upstream MCP server "${target.server}": ${error.message}`, error.data);
    }
    throw new ProtocolError(ProtocolErrorCode.InternalError, `Upstream MCP server "${target.server}" failed: ${errorText(error)}`);
  };

  // Lists show only what the principal may use (the same decision as a call would get).
  server.setRequestHandler('tools/list', () => ({ tools: policies.view(catalog(), scope, principal).tools }));
  server.setRequestHandler('prompts/list', () => ({ prompts: policies.view(catalog(), scope, principal).prompts }));
  server.setRequestHandler('resources/list', () => ({ resources: policies.view(catalog(), scope, principal).resources }));
  server.setRequestHandler('resources/templates/list', () => ({ resourceTemplates: catalog().resourceTemplates }));

  server.setRequestHandler('tools/call', (request, ctx) =>
    callTool(gateway, scope, request.params, {
      signal: ctx.mcpReq.signal,
      notify: (params) => void ctx.mcpReq.notify({ method: 'notifications/progress', params: params }),
    }),
  );

  server.setRequestHandler('prompts/get', async (request, ctx) => {
    const target = catalog().resolvePrompt(request.params.name);
    if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown prompt "${request.params.name}"`);
    authorize(policies, principal, 'prompts/get', target);
    const { client, timeout, release } = await clientFor(target);
    return client
      .getPrompt({ ...request.params, name: target.name }, { signal: ctx.mcpReq.signal, timeout })
      .catch((e: unknown) => named(target, e))
      .finally(release);
  });

  server.setRequestHandler('resources/read', async (request, ctx) => {
    const target = catalog().resolveResource(request.params.uri);
    if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown resource "${request.params.uri}"`);
    authorize(policies, principal, 'resources/read', target);
    const { client, timeout, release } = await clientFor(target);
    const result = await client
      .readResource({ ...request.params, uri: target.name }, { signal: ctx.mcpReq.signal, timeout })
      .catch((e: unknown) => named(target, e))
      .finally(release);
    // Contents carry the upstream's URI; give the client back the one it asked for.
    return { ...result, contents: result.contents.map((c) => (c.uri === target.name ? { ...c, uri: request.params.uri } : c)) };
  });

  server.setRequestHandler('completion/complete', async (request, ctx) => {
    const ref = request.params.ref;
    const c = catalog();
    const target = ref.type === 'ref/prompt' ? c.resolvePrompt(ref.name) : c.resolveResource(ref.uri);
    if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown completion reference`);
    const { client, timeout, release } = await clientFor(target);
    const upstreamRef = ref.type === 'ref/prompt' ? { ...ref, name: target.name } : { ...ref, uri: target.name };
    return client
      .complete({ ...request.params, ref: upstreamRef }, { signal: ctx.mcpReq.signal, timeout })
      .catch((e: unknown) => named(target, e))
      .finally(release);
  });

  server.setRequestHandler('logging/setLevel', async (request) => {
    const servers = scope === '' ? upstreams.connectedServers() : [scope];
    await Promise.all(
      servers.map(async (name) => {
        const client = upstreams.connection(name)?.getClient();
        if (client?.getServerCapabilities()?.logging) await client.setLoggingLevel(request.params.level).catch(() => undefined);
      }),
    );
    return {};
  });

  return server;
}
