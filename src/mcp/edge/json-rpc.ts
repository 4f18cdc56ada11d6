/** A JSON-RPC error answered before any MCP processing (ids unknown: `null`). */
export function jsonRpcError(status: number, code: number, message: string, headers: Record<string, string> = {}, data?: unknown): Response {
  return new Response(JSON.stringify({ jsonrpc: '2.0', error: { code, message, ...(data === undefined ? {} : { data }) }, id: null }), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });
}
