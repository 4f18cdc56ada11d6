import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HttpUpstream } from '../support/http-upstream.js';
import { legacyRequest, legacySession, modernRequest, rpc } from '../support/mcp-raw.js';
import { until } from '../support/until.js';
import { hsToken } from '../support/identity.js';
import { eventually, registerConnected } from '../support/upstreams.js';

type Caller = { callTool(p: { name: string; arguments?: Record<string, unknown> }): Promise<unknown>; listTools(): Promise<{ tools: { name: string }[] }>; close(): Promise<void> };

/** A client of either era on `path` of the gateway. */
async function clientOn(app: TestApp, path: string, era: 'modern' | 'legacy'): Promise<Caller> {
  const url = new URL(`${app.url}${path}`);
  if (era === 'modern') {
    const client = new Client({ name: 'e2e', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    await client.connect(new StreamableHTTPClientTransport(url));
    return client;
  }
  const client = new LegacyClient({ name: 'e2e-v1', version: '1' });
  await client.connect(new LegacyTransport(url));
  return client;
}

const textOf = (result: unknown) => ((result as { content: { text: string }[] }).content[0]).text;

describe('streamable-HTTP upstreams end to end', () => {
  let db: TestDatabase;
  let app: TestApp;
  let upstream: HttpUpstream;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    upstream = await HttpUpstream.start();
    upstream.behaviour.eol = '\r\n';
    upstream.behaviour.sliceBytes = 5;
    await registerConnected(app.url, { name: 'py', transport: 'streamable_http', url: upstream.url });
  });
  after(async () => {
    await app.shutdown('test done');
    await upstream.close();
    await db.drop();
  });

  for (const era of ['modern', 'legacy'] as const) {
    it(`${era} client: calls to an upstream framing SSE with CRLF, characters split by the network, answer (was: every call failed)`, async () => {
      const client = await clientOn(app, '/mcp', era);
      try {
        const result = await client.callTool({ name: 'py__echo', arguments: { text: 'naïve 😀 façade' } });
        assert.equal(textOf(result), 'naïve 😀 façade');
      } finally {
        await client.close();
      }
    });
  }

  it('a restarted upstream that forgot its session: the call is retried on a new session, status says so', async () => {
    upstream.forgetSessions();
    const client = await clientOn(app, '/mcp/py', 'modern');
    try {
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'again' } })), 'again');
    } finally {
      await client.close();
    }
    const view = (await (await fetch(`${app.url}/api/v1/servers/py`)).json()) as { status: { state: string; lastRecovery: string | null } };
    assert.equal(view.status.state, 'connected');
    assert.match(view.status.lastRecovery ?? '', /HTTP 404.*re-initialized the session and retried/);
  });

  it('validates redirectOrigins: origins only, named in the error', async () => {
    for (const bad of [['https://mcp.example.com/path'], ['ftp://mcp.example.com'], 'https://mcp.example.com', ['https://user:pw@mcp.example.com']]) {
      const res = await fetch(`${app.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'redir', transport: 'streamable_http', url: upstream.url, redirectOrigins: bad }) });
      const body = await res.text();
      assert.equal(res.status, 400, body);
      assert.match(body, /redirectOrigins/);
      assert.match(body, /expected an (array of )?origins?/);
    }
    const ok = await fetch(`${app.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'redir', transport: 'streamable_http', url: upstream.url, redirectOrigins: ['https://MCP.example.com:443/'] }) });
    assert.equal(ok.status, 201);
    assert.deepEqual(((await ok.json()) as { redirectOrigins: string[] }).redirectOrigins, ['https://mcp.example.com']);
    await fetch(`${app.url}/api/v1/servers/redir`, { method: 'DELETE' });
  });

  for (const path of ['/mcp/', '/mcp/py/', '/mcp/?x=1']) {
    it(`serves ${path} like the path without its trailing slash`, async () => {
      for (const era of ['modern', 'legacy'] as const) {
        const client = await clientOn(app, path, era);
        try {
          const names = (await client.listTools()).tools.map((t) => t.name);
          assert.ok(names.includes(path.startsWith('/mcp/py') ? 'echo' : 'py__echo'), `${era}: ${names.join(', ')}`);
        } finally {
          await client.close();
        }
      }
    });
  }
});

describe('cancellation towards streamable-HTTP upstreams', () => {
  let db: TestDatabase;
  let app: TestApp;
  let upstream: HttpUpstream;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    upstream = await HttpUpstream.start();
    await registerConnected(app.url, { name: 'remote', transport: 'streamable_http', url: upstream.url });
  });
  after(async () => {
    await app.shutdown('test done');
    await upstream.close();
    await db.drop();
  });

  /** POSTs `body` and drops the connection once the upstream has the call. */
  async function postThenDisconnect(body: unknown, headers: Record<string, string>): Promise<void> {
    const abort = new AbortController();
    const before = upstream.calls('wait').length;
    const sent = fetch(`${app.url}/mcp`, { method: 'POST', headers, body: JSON.stringify(body), signal: abort.signal }).catch(() => undefined);
    await until(() => upstream.calls('wait').length > before);
    abort.abort();
    await sent;
  }

  it('a 2026-07-28 client closing its request stream cancels the call upstream (notifications/cancelled to a 2025 upstream)', async () => {
    const { body, headers } = modernRequest('tools/call', { name: 'remote__wait', arguments: { ms: 30_000 } }, 41);
    await postThenDisconnect(body, headers);
    await until(() => upstream.cancelled.length === 1, 5_000, 'the upstream told to cancel');
    assert.equal(upstream.cancelled[0].requestId, upstream.calls('wait').at(-1)!.id);
  });

  it('a 2025 client disconnecting is not a cancellation: the call runs to its end upstream', async () => {
    const headers = await legacySession(`${app.url}/mcp`);
    const cancelledBefore = upstream.cancelled.length;
    await postThenDisconnect(legacyRequest('tools/call', { name: 'remote__wait', arguments: { ms: 300 } }, 42), headers);
    const upstreamId = upstream.calls('wait').at(-1)!.id;
    await until(() => upstream.completed.includes(upstreamId), 5_000, 'the call completed upstream');
    assert.equal(upstream.cancelled.length, cancelledBefore);
  });

  it('a 2025 client that sends notifications/cancelled does cancel upstream', async () => {
    const headers = await legacySession(`${app.url}/mcp`);
    const cancelledBefore = upstream.cancelled.length;
    const call = rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'remote__wait', arguments: { ms: 30_000 } }, 43), headers);
    const before = upstream.calls('wait').length;
    await until(() => upstream.calls('wait').length > before);
    await rpc(`${app.url}/mcp`, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 43, reason: 'stop' } }, headers);
    await until(() => upstream.cancelled.length > cancelledBefore, 5_000, 'the upstream told to cancel');
    await call.catch(() => undefined);
  });
});

describe('a per-user HTTP upstream that refuses a blank credential', () => {
  const JWT_SECRET = 'upstreams-http-jwt-secret-0123456789abcdef';
  const ADMIN_KEY = 'admin-upstreams-http-0123456789';
  const admin = { 'x-api-key': ADMIN_KEY };
  const json = { 'content-type': 'application/json' };
  let db: TestDatabase;
  let app: TestApp;
  let upstream: HttpUpstream;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY });
    upstream = await HttpUpstream.start();
    upstream.behaviour.token = 'dora-token';
  });
  after(async () => {
    await app.shutdown('test done');
    await upstream.close();
    await db.drop();
  });

  it('is listed through the caller who set the secret, and its status says needs_user_credentials (was: error, no tools, ever)', async () => {
    const created = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { ...json, ...admin },
      body: JSON.stringify({ name: 'vault', transport: 'streamable_http', url: upstream.url, headers: { Authorization: 'Bearer ${secret:TOKEN}' } }),
    });
    assert.equal(created.status, 201);
    const status = async () => ((await (await fetch(`${app.url}/api/v1/servers/vault`, { headers: admin })).json()) as { status: { state: string; toolCount: number; lastError: string | null } }).status;
    await eventually('the blank connection refused', async () => ((await status()).state === 'needs_user_credentials' ? true : undefined));
    assert.match((await status()).lastError ?? '', /HTTP 401/);

    const dora = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: 'dora' })}` };
    const set = await fetch(`${app.url}/api/v1/me/secrets/vault/TOKEN`, { method: 'PUT', headers: { ...json, ...dora }, body: JSON.stringify({ value: 'dora-token' }) });
    assert.ok(set.status < 300, `secret set: ${set.status}`);

    const client = new Client({ name: 'dora', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: dora } }));
    try {
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(names.includes('vault__echo'), names.join(', '));
      const result = await client.callTool({ name: 'vault__echo', arguments: { text: 'through dora' } });
      assert.equal(textOf(result), 'through dora');
    } finally {
      await client.close();
    }
    const after = await status();
    assert.equal(after.state, 'needs_user_credentials');
    assert.equal(after.toolCount, 5);
  });
});
