/** `/mcp/` and `/mcp/<server>/`, query kept: the MCP endpoints written with a trailing slash. */
const MCP_WITH_SLASH = /^\/mcp(\/[^/?#]+)?\/(?=$|\?)/;

/**
 * The request URL with the trailing slash of an MCP endpoint removed, so `/mcp/` serves as
 * `/mcp` and `/mcp/<server>/` as `/mcp/<server>` (clients and proxies add the slash, and
 * servers such as Starlette's redirect `/mcp` to `/mcp/`); every other URL unchanged. Used as
 * Fastify's `rewriteUrl`, before routing, authentication and the Host/Origin checks, which
 * then see one path per endpoint. Only these routes: elsewhere a slash stays significant.
 */
export function withoutMcpTrailingSlash(url: string): string {
  const match = MCP_WITH_SLASH.exec(url);
  return match ? `/mcp${match[1] ?? ''}${url.slice(match[0].length)}` : url;
}
