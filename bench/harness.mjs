// Shared pieces of the bench scripts: free ports, waiting for a server, the request bodies and
// headers of both MCP eras.
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now. */
export const freePort = () =>
  new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** Polls `url` with GET every 100 ms until `ok(response)`; throws after `timeoutMs`. */
export async function waitFor(url, ok = (r) => r.status < 500, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await fetch(url, { method: 'GET' }).catch(() => undefined);
    if (r && ok(r)) return;
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

export const ACCEPT = 'application/json, text/event-stream';
export const LEGACY = '2025-06-18';
export const call = (name, id = 1) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { message: 'hello' } } });
export const list = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
// The modern era (2026-07-28): stateless, every request carries its envelope and the
// MCP-Protocol-Version / Mcp-Method / Mcp-Name headers.
export const MODERN = '2026-07-28';
export const ENVELOPE = {
  'io.modelcontextprotocol/protocolVersion': MODERN,
  'io.modelcontextprotocol/clientInfo': { name: 'bench', version: '1' },
  'io.modelcontextprotocol/clientCapabilities': {},
};
export const modernHeaders = (method, name, auth = {}) => ({ 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': MODERN, 'mcp-method': method, ...(name ? { 'mcp-name': name } : {}), ...auth });
export const modernCall = (name) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name, arguments: { message: 'hello' }, _meta: ENVELOPE } });
export const modernList = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: ENVELOPE } });
