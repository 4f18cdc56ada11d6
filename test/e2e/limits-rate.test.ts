import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { registerConnected } from '../support/upstreams.js';

const KEYS = ['rate-limit-key-one-0123456789abcdef', 'rate-limit-key-two-0123456789abcdef', 'rate-limit-key-three-0123456789abcd'];
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'limits-rate', version: '1' } },
};

interface ErrorEnvelope {
  error: { code: string | number; message: string; details?: { setting: string; limit: number } };
  jsonrpc?: string;
}

describe('rate limits (HTTP_RATE_LIMIT_*)', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: KEYS.join(','),
      // initialize without credentials is what one test here limits (the default now requires them).
      MCP_SESSION_AUTH_REQUIRE_FOR_SESSION: 'false',
      HTTP_TRUST_PROXY: 'true',
      HTTP_RATE_LIMIT_ENABLED: 'true',
      HTTP_RATE_LIMIT_WINDOW: '60000',
      HTTP_RATE_LIMIT_MAX_REQUESTS: '10',
      HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED: '3',
      HTTP_RATE_LIMIT_REPLICAS: '2',
    });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const me = (key: string | undefined, from: string) =>
    fetch(`${app.url}/api/v1/me`, { headers: { 'x-forwarded-for': from, ...(key ? { 'x-api-key': key } : {}) } });

  function assertRateLimitHeaders(res: Response, bucket: string, quota: number): void {
    const retryAfter = Number(res.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After in 1..60, got ${res.headers.get('retry-after')}`);
    assert.equal(res.headers.get('ratelimit-policy'), `"${bucket}";q=${quota};w=60`);
    assert.match(res.headers.get('ratelimit') ?? '', new RegExp(`^"${bucket}";r=0;t=\\d+$`));
  }

  it('limits each authenticated principal to its per-replica share (10 / 2 replicas = 5), with 429, Retry-After and RateLimit headers', async () => {
    for (let i = 0; i < 5; i++) assert.equal((await me(KEYS[0], '10.1.0.1')).status, 200, `request ${i + 1}`);
    const refused = await me(KEYS[0], '10.1.0.2');
    assert.equal(refused.status, 429, 'the principal is limited whatever address it comes from');
    assertRateLimitHeaders(refused, 'principal', 5);
    const body = (await refused.json()) as ErrorEnvelope;
    assert.equal(body.error.code, 'too_many_requests');
    assert.match(body.error.message, /HTTP_RATE_LIMIT_MAX_REQUESTS/);
    assert.equal(body.error.details?.setting, 'HTTP_RATE_LIMIT_MAX_REQUESTS');
    // Another principal from the same address has its own budget; probes are never limited.
    assert.equal((await me(KEYS[1], '10.1.0.1')).status, 200);
    assert.equal((await fetch(`${app.url}/healthz`, { headers: { 'x-forwarded-for': '10.1.0.1' } })).status, 200);
  });

  it('answers 429 on /mcp with a JSON-RPC error body', async () => {
    const post = () => fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, 'x-api-key': KEYS[2], 'x-forwarded-for': '10.2.0.1' }, body: JSON.stringify(initialize) });
    for (let i = 0; i < 5; i++) {
      const res = await post();
      assert.equal(res.status, 200, `initialize ${i + 1}`);
      await res.text();
    }
    const refused = await post();
    assert.equal(refused.status, 429);
    assertRateLimitHeaders(refused, 'principal', 5);
    const body = (await refused.json()) as ErrorEnvelope;
    assert.equal(body.jsonrpc, '2.0');
    assert.equal(typeof body.error.code, 'number');
    assert.match(body.error.message, /Too many requests.*HTTP_RATE_LIMIT_MAX_REQUESTS/);
  });

  it('cuts off an address after its failed authentications, before any credential is checked', async () => {
    const bad = 'not-a-valid-key-0123456789abcdefgh';
    // Budget for unauthenticated traffic per replica: ceil(3 / 2) = 2.
    for (let i = 0; i < 2; i++) assert.equal((await me(bad, '10.3.0.1')).status, 401, `failed attempt ${i + 1}`);
    const refused = await me(bad, '10.3.0.1');
    assert.equal(refused.status, 429);
    assertRateLimitHeaders(refused, 'address', 2);
    assert.match(((await refused.json()) as ErrorEnvelope).error.message, /HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED/);
    // Until the window ends, even a valid key from that address waits; other addresses do not.
    assert.equal((await me(KEYS[1], '10.3.0.1')).status, 429);
    assert.equal((await me(bad, '10.3.0.2')).status, 401);
  });

  it('limits initialize without credentials per client address', async () => {
    const open = (from: string) => fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, 'x-forwarded-for': from }, body: JSON.stringify(initialize) });
    for (let i = 0; i < 2; i++) {
      const res = await open('10.4.0.1');
      assert.equal(res.status, 200, `initialize ${i + 1}`);
      await res.text();
    }
    const refused = await open('10.4.0.1');
    assert.equal(refused.status, 429);
    assertRateLimitHeaders(refused, 'address', 2);
    assert.equal(((await refused.json()) as ErrorEnvelope).jsonrpc, '2.0');
    const other = await open('10.4.0.2');
    assert.equal(other.status, 200);
    await other.text();
  });
});

describe('per-tool rate limits (HTTP_RATE_LIMIT_TOOLS) through the MCP pipeline, both eras', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { HTTP_RATE_LIMIT_ENABLED: 'true', HTTP_RATE_LIMIT_TOOLS: 'everything__ec*=3' });
    await registerConnected(app.url);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('refuses the call beyond the budget with JSON-RPC error -32029 naming the setting; other tools are not counted', async () => {
    const legacy = new LegacyClient({ name: 'rate-legacy', version: '1' });
    await legacy.connect(new LegacyTransport(new URL(`${app.url}/mcp`)));
    const modern = new Client({ name: 'rate-modern', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await modern.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`)));
    try {
      const echo = { name: 'everything__echo', arguments: { message: 'hi' } };
      // Both eras, the fast path and the SDK path (a progress token), share the principal's budget.
      await legacy.callTool(echo);
      await modern.callTool(echo);
      await legacy.callTool({ ...echo, _meta: { progressToken: 'p1' } });
      await assert.rejects(legacy.callTool(echo), (e: Error & { code?: number }) => e.code === -32029 && /HTTP_RATE_LIMIT_TOOLS/.test(e.message));
      await assert.rejects(modern.callTool(echo), (e: Error & { code?: number }) => e.code === -32029);
      const sum = await legacy.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } });
      assert.notEqual(sum.isError, true, 'a tool outside the rule is not limited');
    } finally {
      await legacy.close();
      await modern.close();
    }
  });
});
