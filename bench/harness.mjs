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

/**
 * Node flags Gatehouse runs with, as the Dockerfile and `npm start` start it: AsyncLocalStorage
 * on async context frames instead of async hooks (Node 22; the default from Node 24).
 */
export const GATEHOUSE_NODE_FLAGS = ['--experimental-async-context-frame'];

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

/**
 * Starts the fast echo upstream (5 tools) and one Gatehouse (`<dir>/dist/main.js`, node flags
 * `nodeArgs` — by default {@link GATEHOUSE_NODE_FLAGS} —, run under `wrapper` — e.g. valgrind — when given; extra variables `env`) as teams run it — NODE_ENV=production, LOG_LEVEL=info unless `LOG_LEVEL` or
 * `BENCH_LOG_LEVEL` is set, `MCP_AUTH_STRATEGY=api_key` with a random static key — on a database
 * of its own under TEST_DATABASE_URL, and registers the upstream as server `echo`. Resolves
 * `{ base, auth, child, stop }` once the server is connected; `stop()` ends both processes and
 * drops the database.
 */
export async function launchGatehouse({ dir = '.', nodeArgs = GATEHOUSE_NODE_FLAGS, stderr = 'inherit', wrapper = [], readyTimeoutMs = 60_000, env = {} } = {}) {
  const { spawn } = await import('node:child_process');
  const { randomBytes } = await import('node:crypto');
  const { default: pg } = await import('pg');
  const adminUrl = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
  const db = `gh_bench_${randomBytes(4).toString('hex')}`;
  const sql = async (text) => {
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(text);
    await c.end();
  };
  await sql(`CREATE DATABASE ${db}`);
  const dbUrl = new URL(adminUrl);
  dbUrl.pathname = `/${db}`;
  const key = randomBytes(24).toString('hex');
  const [pUp, pGh] = await Promise.all([freePort(), freePort()]);
  const up = spawn(process.execPath, ['bench/echo-upstream.mjs'], { env: { ...process.env, PORT: String(pUp), TOOLS: '5' }, stdio: 'ignore' });
  const [command, ...args] = [...wrapper, process.execPath, ...nodeArgs, `${dir}/dist/main.js`];
  const child = spawn(command, args, {
    cwd: dir,
    env: {
      ...process.env,
      DATABASE_URL: dbUrl.toString(),
      PORT: String(pGh),
      NODE_ENV: 'production',
      LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? process.env.LOG_LEVEL ?? 'info',
      GATEHOUSE_ENV_FILE: '/nonexistent',
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: key,
      HTTP_MAX_CONCURRENT_SESSIONS: '100000',
      GATEHOUSE_ENCRYPTION_KEYS: `b:${randomBytes(32).toString('base64')}`,
      ...env,
    },
    stdio: ['ignore', 'ignore', stderr],
  });
  const stop = async () => {
    if (child.exitCode === null) await new Promise((res) => (child.once('exit', res), child.kill('SIGTERM')));
    up.kill();
    await sql(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
  };
  const base = `http://127.0.0.1:${pGh}`;
  const auth = { 'x-api-key': key };
  try {
    await waitFor(`${base}/readyz`, (r) => r.status === 200, readyTimeoutMs);
    const r = await fetch(`${base}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json', ...auth }, body: JSON.stringify({ name: 'echo', transport: 'streamable_http', url: `http://127.0.0.1:${pUp}/mcp` }) });
    if (r.status !== 201) throw new Error(`register: ${r.status}`);
    for (let i = 0; i < 100; i++) {
      const v = await (await fetch(`${base}/api/v1/servers/echo`, { headers: auth })).json();
      if (v.status?.state === 'connected') break;
      await new Promise((res) => setTimeout(res, 100));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return { base, auth, child, stop };
}

/**
 * The headers and body of a `tools/call echo__echo` to Gatehouse at `base` with credentials
 * `auth`, per era: legacy opens a 2025-06-18 session first (`initialize`) and names it;
 * modern carries the 2026-07-28 envelope and headers.
 */
export async function toolsCallRequest(base, auth, era) {
  if (era !== 'legacy') return { headers: modernHeaders('tools/call', 'echo__echo', auth), body: modernCall('echo__echo') };
  const init = await fetch(`${base}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT, ...auth }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }) });
  await init.text();
  return { headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id'), ...auth }, body: call('echo__echo') };
}
