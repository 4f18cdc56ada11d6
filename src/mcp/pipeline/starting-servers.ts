import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';
import type { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import type { McpOperationRequest } from './mcp-operation.js';

/** How long a call naming a tool no connected server offers waits for servers still starting (ms). */
export const STARTING_WAIT_MS = 5_000;

/**
 * For a `tools/call` whose tool its scope's catalog does not (yet) list while servers of that
 * scope are on their first connection attempt: waits for them (at most {@link STARTING_WAIT_MS})
 * and resolves with the names still starting then — the caller answers "server X is starting"
 * (see {@link startingError}) instead of "Unknown tool" if the tool is still unknown. Undefined
 * (no wait) for every other request, so the common path stays synchronous.
 */
export function waitForStarting(upstreams: UpstreamServersService, request: McpOperationRequest): Promise<string[]> | undefined {
  if (request.kind !== 'tools/call') return undefined;
  const name = (request.params as { name?: unknown }).name;
  const catalog = upstreams.catalog(request.scope);
  if (!catalog || typeof name !== 'string' || catalog.resolveTool(name)) return undefined;
  return upstreams.stillStarting(request.scope, STARTING_WAIT_MS).then((starting) => (starting.length > 0 ? starting : []));
}

/** The error for a call whose tool is unknown while `servers` are still starting: -32603, `data.code: "server_starting"`. */
export function startingError(servers: string[]): ProtocolError {
  const names = servers.map((s) => `"${s}"`).join(', ');
  return new ProtocolError(ProtocolErrorCode.InternalError, `MCP server ${names} ${servers.length > 1 ? 'are' : 'is'} starting; try again shortly`, {
    code: 'server_starting',
    servers,
  });
}
