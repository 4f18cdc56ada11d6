// The per-request cost of authentication and secret resolution, measured in-process: the
// end-to-end runs cannot resolve a few microseconds under this machine's ±15 % run-to-run noise,
// so the same code paths are timed directly here (sequentially, after warm-up) and related to
// the CPU a whole tools/call costs Gatehouse in the end-to-end runs.
import { createRootLogger } from '../dist/src/common/logging/logger.js';
import { loadConfig } from '../dist/src/config/load-config.js';
import { startGatehouse } from '../dist/src/bootstrap.js';
import { AuthenticationService } from '../dist/src/auth/authentication.service.js';
import { UpstreamServersService } from '../dist/src/upstreams/upstream-servers.service.js';
import { SecretsService } from '../dist/src/secrets/secrets.service.js';
import { PoliciesService } from '../dist/src/policies/policies.service.js';
import { routeCall } from '../dist/src/mcp/upstream-route.js';
import { UpstreamConnectionsService } from '../dist/src/upstream-oauth/upstream-connections.service.js';
import { McpOperationPipeline } from '../dist/src/mcp/pipeline/mcp-operation-pipeline.js';
import { authorize } from '../dist/src/mcp/pipeline/authorized-operation.js';

const BLOCK = 4_000;
const ROUNDS = 5;

/**
 * Times each function in alternating blocks (each round starting with the next one, after a
 * warm-up of all), and returns the median µs per call of each: whichever runs first would
 * otherwise pay for JIT and GC warm-up.
 */
async function compare(fns) {
  const names = Object.keys(fns);
  for (const name of names) for (let i = 0; i < 2_000; i++) await fns[name]();
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length];
      const start = process.hrtime.bigint();
      for (let i = 0; i < BLOCK; i++) await fns[name]();
      samples[name].push(Number(process.hrtime.bigint() - start) / BLOCK / 1000);
    }
  }
  return Object.fromEntries(names.map((n) => [n, samples[n].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]]));
}

/** Times authenticate() per strategy and routeCall() plain vs with a resolved secret header. */
export async function measureInProcess(env, { apiKey, jwt }) {
  const result = loadConfig({ ...env, LOG_LEVEL: 'silent', HOST: '127.0.0.1' }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  result.config.http.port = 0; // any free port (the schema accepts 1-65535 from the environment)
  const logger = await createRootLogger(result.config);
  const gh = await startGatehouse(result.config, { logger });
  try {
    const auth = gh.app.get(AuthenticationService);
    const request = (headers) => ({ method: 'POST', url: '/mcp', headers, query: {}, raw: { socket: { remoteAddress: '127.0.0.1' }, rawHeaders: Object.entries(headers).flat() } });
    const none = request({});
    const key = request({ 'x-api-key': apiKey });
    const bearer = request({ authorization: `Bearer ${jwt}` });
    const principal = await auth.authenticate(key);
    const authUs = await compare({
      none: () => auth.authenticate(none),
      apiKey: () => auth.authenticate(key),
      jwt: () => auth.authenticate(bearer),
    });

    // The whole request pipeline (routing, guard, session, fast path), without network or
    // upstream: `ping` through Fastify's inject, per credential.
    const fastify = gh.app.getHttpAdapter().getInstance();
    const base = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', host: 'localhost' };
    const session = async (auth) => {
      const init = await fastify.inject({
        method: 'POST',
        url: '/mcp',
        headers: { ...base, ...auth },
        payload: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'b', version: '1' } } }),
      });
      return { ...base, ...auth, 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': init.headers['mcp-session-id'] };
    };
    const ping = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' });
    const pipeline = (headers) => async () => {
      const r = await fastify.inject({ method: 'POST', url: '/mcp', headers, payload: ping });
      if (r.statusCode !== 200) throw new Error(`ping: ${r.statusCode} ${r.body}`);
    };
    const pingUs = await compare({
      none: pipeline(await session({})),
      apiKey: pipeline(await session({ 'x-api-key': apiKey })),
      jwt: pipeline(await session({ authorization: `Bearer ${jwt}` })),
    });

    // The same through both eras' fast paths: tools/list of /mcp/echo (no upstream round trip).
    const ENVELOPE = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'b', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    };
    const listing = (url, headers, payload) => async () => {
      const r = await fastify.inject({ method: 'POST', url, headers, payload });
      if (r.statusCode !== 200 || !r.body.includes('"result"')) throw new Error(`tools/list: ${r.statusCode} ${r.body.slice(0, 200)}`);
    };
    const legacyEcho = await fastify.inject({
      method: 'POST',
      url: '/mcp/echo',
      headers: base,
      payload: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'b', version: '1' } } }),
    });
    const eraUs = await compare({
      legacy: listing('/mcp/echo', { ...base, 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': legacyEcho.headers['mcp-session-id'] }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list' })),
      modern: listing('/mcp/echo', { ...base, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/list' }, JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: { _meta: ENVELOPE } })),
    });

    const upstreams = gh.app.get(UpstreamServersService);
    const secrets = gh.app.get(SecretsService);
    const connections = gh.app.get(UpstreamConnectionsService);
    for (let i = 0; i < 200 && !(upstreams.connection('vault')?.getClient() && upstreams.connection('echo')?.getClient()); i++) await new Promise((r) => setTimeout(r, 50));
    // routeCall takes only an authorized operation: classify and authorize one per server (once).
    const mcp = gh.app.get(McpOperationPipeline);
    const policies = gh.app.get(PoliciesService);
    const op = (server) => authorize(policies, mcp.classify({ kind: 'tools/call', scope: '', principal, params: { name: `${server}__echo` }, era: 'legacy', path: 'fast' }));
    const route = (server) => {
      const authorized = op(server);
      return async () => {
        const r = await routeCall({ upstreams, secrets, connections }, authorized);
        if (!r || 'problem' in r) throw new Error(`route ${server}: ${r?.problem ?? 'not connected'}`);
        r.release();
      };
    };
    await route('vault')(); // starts the caller's pooled connection
    const routeUs = await compare({ plain: route('echo'), secret: route('vault') });
    return { authUs, routeUs, pingUs, eraUs };
  } finally {
    await gh.shutdown('bench done');
  }
}
