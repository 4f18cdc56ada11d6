import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { adminUrl, createTestDatabase, type TestDatabase } from '../support/database.js';
import { FaultProxy } from '../support/fault-proxy.js';
import { eventually } from '../support/upstreams.js';

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

/** A request that must be answered, one way or another, well within `withinMs`. */
async function timed(url: string, init: RequestInit = {}, withinMs = 8_000): Promise<{ status: number; body: unknown; retryAfter: string | null; ms: number }> {
  const started = Date.now();
  const res = await fetch(url, { ...init, signal: AbortSignal.timeout(withinMs) }).catch((error: Error) => {
    throw new Error(`${init.method ?? 'GET'} ${url} got no answer within ${withinMs} ms (${error.name}): the request hangs on the database`);
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined, retryAfter: res.headers.get('retry-after'), ms: Date.now() - started };
}

function assertUnavailable(r: { status: number; body: unknown; retryAfter: string | null }, what: string): void {
  assert.equal(r.status, 503, `${what}: ${JSON.stringify(r.body)}`);
  const body = r.body as ErrorBody;
  assert.equal(body.error.code, 'service_unavailable', what);
  assert.equal(body.error.message, 'The database is unavailable; try again shortly', what);
  assert.ok(body.error.requestId, what);
  assert.equal(r.retryAfter, '5', what);
  assert.ok(!JSON.stringify(body).includes('127.0.0.1'), 'nothing about the database leaks');
}

describe('database outage: frozen or stopped PostgreSQL (through a fault-injecting proxy)', () => {
  let db: TestDatabase;
  let proxy: FaultProxy;
  let app: TestApp;
  let mcp: LegacyClient;

  before(async () => {
    db = await createTestDatabase();
    const server = new URL(adminUrl());
    proxy = await FaultProxy.start(server.hostname, Number(server.port || 5432));
    app = await startTestApp(proxy.rewrite(db.url), { DB_CONNECT_TIMEOUT: '1000', DB_QUERY_TIMEOUT: '1500' });
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'slow', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/slow-upstream.mjs')], env: { CANCEL_LOG: '/dev/null' } }),
    });
    assert.equal(res.status, 201, await res.text());
    await eventually('upstream connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/slow`)).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
    mcp = new LegacyClient({ name: 'outage-test', version: '1' });
    await mcp.connect(new LegacyTransport(new URL(`${app.url}/mcp`)));
    const warm = await mcp.callTool({ name: 'slow__wait', arguments: { ms: 0 } });
    assert.deepEqual(warm.content, [{ type: 'text', text: 'waited' }]);
  });
  after(async () => {
    proxy?.set('pass');
    await mcp?.close().catch(() => undefined);
    await app?.shutdown('test done');
    await proxy?.close();
    await db?.drop();
  });

  it('frozen: the admin API answers 503 service_unavailable within the timeouts; the cached session and catalog keep serving', async () => {
    proxy.set('freeze');

    const list = await timed(`${app.url}/api/v1/servers`);
    assertUnavailable(list, 'GET /api/v1/servers while frozen');
    const again = await timed(`${app.url}/api/v1/servers/slow`);
    assertUnavailable(again, 'a second read while frozen (the first stuck connection must not queue it forever)');
    const write = await timed(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'other', transport: 'stdio', command: process.execPath, args: ['-e', ''] }),
    });
    assertUnavailable(write, 'POST /api/v1/servers while frozen');

    const call = await mcp.callTool({ name: 'slow__wait', arguments: { ms: 0 } }, undefined, { timeout: 5_000 });
    assert.deepEqual(call.content, [{ type: 'text', text: 'waited' }], 'a cached legacy session calls a cached tool without the database');
    const tools = await mcp.listTools(undefined, { timeout: 5_000 });
    assert.deepEqual(tools.tools.map((t) => t.name), ['slow__wait']);
    const modern = new Client({ name: 'outage-modern', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await modern.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`)));
    try {
      const answer = await modern.callTool({ name: 'slow__wait', arguments: { ms: 0 } }, { timeout: 5_000 });
      assert.deepEqual(answer.content, [{ type: 'text', text: 'waited' }], 'a modern (stateless) client too');
    } finally {
      await modern.close();
    }

    const init = await timed(`${app.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    assert.equal(init.status, 503, `a new session needs the database: ${JSON.stringify(init.body)}`);
    assert.deepEqual(init.body, { jsonrpc: '2.0', error: { code: -32600, message: 'The database is unavailable; try again shortly' }, id: null });

    const ready = await timed(`${app.url}/readyz`);
    assert.equal(ready.status, 503);
    assert.ok(app.logs.lines.some((l) => l.msg === 'database unavailable: answered 503' && l.level === 'warn'), 'each 503 is logged once, as a warning');
  });

  it('stopped (connections cut and refused): 503 service_unavailable, not 500', async () => {
    proxy.set('cut');
    assertUnavailable(await timed(`${app.url}/api/v1/servers`), 'GET /api/v1/servers while cut');
    assertUnavailable(await timed(`${app.url}/api/v1/servers/slow`, { method: 'DELETE' }), 'DELETE while cut');

    // An API key this replica has not cached cannot be checked: 503 (not 401, not 500).
    proxy.set('pass');
    const keyed = await startTestApp(proxy.rewrite(db.url), { MCP_AUTH_STRATEGY: 'api_key', DB_CONNECT_TIMEOUT: '1000', DB_QUERY_TIMEOUT: '1500' });
    try {
      proxy.set('cut');
      const key = `gatehouse_${'a'.repeat(43)}`;
      assertUnavailable(await timed(`${keyed.url}/api/v1/servers`, { headers: { 'x-api-key': key } }), 'authenticating an uncached API key while cut');
    } finally {
      proxy.set('cut');
      await keyed.shutdown('test done');
    }
  });

  it('recovers when the database is back', async () => {
    proxy.set('pass');
    await eventually('the admin API answers 200 again', async () => ((await timed(`${app.url}/api/v1/servers`)).status === 200 ? true : undefined));
    await eventually('ready again', async () => ((await timed(`${app.url}/readyz`)).status === 200 ? true : undefined));
  });

  it('shutdown with the database frozen is still bounded by SHUTDOWN_TIMEOUT (exit code 1: the pool could not close cleanly)', async () => {
    const other = await startTestApp(proxy.rewrite(db.url), { SHUTDOWN_TIMEOUT: '1000', DB_CONNECT_TIMEOUT: '1000', DB_QUERY_TIMEOUT: '1500' });
    assert.equal((await timed(`${other.url}/api/v1/servers`)).status, 200, 'pooled connections are open');
    proxy.set('freeze');
    try {
      const started = Date.now();
      const code = await Promise.race([other.shutdown('test'), new Promise((resolve) => setTimeout(() => resolve('still closing'), 8_000).unref())]);
      assert.equal(code, 1, `shutdown resolved (${String(code)}) within ${Date.now() - started} ms`);
      assert.ok(other.logs.lines.some((l) => l.msg === 'shutdown timeout: the app did not finish closing; giving up on it' && l.level === 'error'));
    } finally {
      proxy.set('pass');
    }
  });
});
