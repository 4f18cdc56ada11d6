import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { McpLaneOffModule } from '../../src/mcp/edge/lane.js';
import { McpController } from '../../src/mcp/mcp.controller.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ACCEPT, ENVELOPE, LEGACY, MODERN } from '../support/mcp-raw.js';
import { connectedOn, registerConnected } from '../support/upstreams.js';

const ADMIN_KEY = 'lane-admin-key-0123456789abcdefghij';
const LIMITED_KEY = 'lane-limited-key-0123456789abcdefgh';
const WRONG_KEY = 'lane-wrong-key-0123456789abcdefghijk';
const ORIGIN = 'http://localhost:5173';

/** One answer, as written: status, every header (raw order and case folded to lower case), body text. */
interface Answer {
  status: number;
  headers: [string, string][];
  body: string;
}

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
}

/** Sends `req` over keep-alive HTTP/1.1 with a fixed request id, reading the answer as written. */
function send(base: string, agent: Agent, req: Req, requestId: string): Promise<Answer> {
  const url = new URL(req.path, base);
  return new Promise((resolve, reject) => {
    const r = request(url, { method: req.method, agent, headers: { 'x-request-id': requestId, ...req.headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const headers: [string, string][] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) headers.push([res.rawHeaders[i].toLowerCase(), res.rawHeaders[i + 1]]);
        resolve({ status: res.statusCode ?? 0, headers, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    r.on('error', reject);
    r.end(req.body);
  });
}

/** The values that differ between two replicas by nature (clock, session ids, rate-limit windows) replaced by their shape. */
function comparable(answer: Answer): Answer {
  const headers = answer.headers.map(([name, value]): [string, string] => {
    if (name === 'date') return [name, '<date>'];
    if (name === 'mcp-session-id') return [name, '<session>'];
    if (name === 'retry-after') return [name, /^\d+$/.test(value) ? '<seconds>' : value];
    if (name === 'ratelimit') return [name, value.replace(/t=\d+/, 't=<seconds>')];
    return [name, value];
  });
  return { ...answer, headers };
}

const json = { 'content-type': 'application/json', accept: ACCEPT };
const initialize = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'lane', version: '1' } } });
const legacyCall = (id: number) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'lane' } } });
const modernCall = (id: number, name = 'everything__echo') =>
  JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: { message: 'lane' }, _meta: ENVELOPE } });
const modernHeaders = (name = 'everything__echo') => ({ ...json, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': name });

/** A pair of replicas on one database: the lane on, and off (every /mcp POST through Nest's router). */
class Pair {
  on!: TestApp;
  off!: TestApp;
  readonly agents = { on: new Agent({ keepAlive: true }), off: new Agent({ keepAlive: true }) };
  /** Per replica: which way McpController.serve was reached ('POST lane', 'GET nest', …), one entry per call. */
  readonly served = { on: [] as string[], off: [] as string[] };
  private n = 0;

  async start(db: TestDatabase, env: Record<string, string>): Promise<void> {
    this.on = await startTestApp(db.url, env);
    this.off = await startTestApp(db.url, env, { imports: [McpLaneOffModule] });
    for (const side of ['on', 'off'] as const) {
      const controller = this[side].app.get(McpController);
      const serve = controller.serve.bind(controller);
      controller.serve = (...args) => {
        const stack = new Error().stack ?? '';
        const way = stack.includes('router-execution-context') ? 'nest' : stack.includes('lane.js') ? 'lane' : 'other';
        this.served[side].push(`${args[0].method} ${way}`);
        return serve(...args);
      };
    }
  }

  async stop(): Promise<void> {
    this.agents.on.destroy();
    this.agents.off.destroy();
    await this.on?.shutdown('test done');
    await this.off?.shutdown('test done');
  }

  /** Sends `req` to both replicas (`perSide` adjusts it per replica, e.g. its session); asserts the same answer; returns the lane's. */
  async same(title: string, req: Req, perSide: (side: 'on' | 'off', req: Req) => Req = (_s, r) => r): Promise<Answer> {
    const id = `lane-${++this.n}`;
    const off = await send(this.off.url, this.agents.off, perSide('off', req), id);
    const on = await send(this.on.url, this.agents.on, perSide('on', req), id);
    assert.deepEqual(comparable(on), comparable(off), `${title}: the same answer with the lane on and off`);
    return on;
  }
}

const header = (a: Answer, name: string) => a.headers.find(([n]) => n === name)?.[1];

describe('the MCP lane answers /mcp exactly as Nest’s router does', () => {
  let db: TestDatabase;
  const pair = new Pair();
  const sessions = { on: '', off: '' };

  before(async () => {
    db = await createTestDatabase();
    await pair.start(db, {
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: ADMIN_KEY,
      HTTP_ENABLE_CORS: 'true',
      HTTP_CORS_ORIGINS: '*',
      HTTP_RATE_LIMIT_ENABLED: 'true',
    });
    await registerConnected(pair.off.url, undefined, { 'x-api-key': ADMIN_KEY });
    await connectedOn(pair.on.url, 'everything', { 'x-api-key': ADMIN_KEY });
  });
  after(async () => {
    await pair.stop();
    await db.drop();
  });

  it('every request of the matrix, both eras, refusals, errors, other methods and CORS', async () => {
    const admin = { 'x-api-key': ADMIN_KEY };
    // An API key without the mcp permission.
    const created = await fetch(`${pair.off.url}/api/v1/api-keys`, { method: 'POST', headers: { 'content-type': 'application/json', ...admin }, body: JSON.stringify({ name: 'reader', role: 'admin', scopes: ['admin:read'] }) });
    assert.equal(created.status, 201, await created.clone().text());
    const readerKey = ((await created.json()) as { key: string }).key;

    const init = await pair.same('legacy initialize', { method: 'POST', path: '/mcp', headers: { ...json, ...admin }, body: initialize(1) });
    assert.equal(init.status, 200);
    // Each replica's own session for the legacy calls.
    for (const side of ['on', 'off'] as const) {
      const a = await send(pair[side].url, pair.agents[side], { method: 'POST', path: '/mcp', headers: { ...json, ...admin }, body: initialize(1) }, 'lane-init');
      sessions[side] = header(a, 'mcp-session-id')!;
      assert.ok(sessions[side]);
    }
    const inSession = (side: 'on' | 'off', r: Req): Req => ({ ...r, headers: { ...r.headers, 'mcp-session-id': sessions[side] } });
    const legacy = { ...json, ...admin, 'mcp-protocol-version': LEGACY };

    const good = await pair.same('good legacy call', { method: 'POST', path: '/mcp', headers: legacy, body: legacyCall(2) }, inSession);
    assert.equal(good.status, 200);
    assert.match(good.body, /"text":"Echo: lane"/);
    assert.equal(header(good, 'content-type'), 'application/json; charset=utf-8');
    const modern = await pair.same('good modern call', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), ...admin }, body: modernCall(3) });
    assert.equal(modern.status, 200);
    assert.match(modern.body, /Echo: lane/);
    const single = await pair.same('good /mcp/<server> call', { method: 'POST', path: '/mcp/everything', headers: { ...modernHeaders('echo'), ...admin }, body: modernCall(4, 'echo') });
    assert.equal(single.status, 200);
    assert.equal((await pair.same('trailing slash /mcp/', { method: 'POST', path: '/mcp/', headers: { ...modernHeaders(), ...admin }, body: modernCall(5) })).status, 200);
    assert.equal((await pair.same('trailing slash /mcp/<server>/', { method: 'POST', path: '/mcp/everything/', headers: { ...modernHeaders('echo'), ...admin }, body: modernCall(6, 'echo') })).status, 200);
    assert.equal((await pair.same('SDK path: prompts/list', { method: 'POST', path: '/mcp', headers: legacy, body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'prompts/list' }) }, inSession)).status, 200);

    const none = await pair.same('no credentials', { method: 'POST', path: '/mcp', headers: modernHeaders(), body: modernCall(8) });
    assert.equal(none.status, 401);
    assert.match(header(none, 'www-authenticate') ?? '', /^Bearer /);
    assert.equal((await pair.same('wrong key', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), 'x-api-key': WRONG_KEY }, body: modernCall(9) })).status, 401);
    const denied = await pair.same('missing permission', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), 'x-api-key': readerKey }, body: modernCall(10) });
    assert.equal(denied.status, 403);
    assert.match(header(denied, 'www-authenticate') ?? '', /insufficient_scope/);
    assert.equal((await pair.same('unknown server scope', { method: 'POST', path: '/mcp/nope', headers: { ...modernHeaders(), ...admin }, body: modernCall(11) })).status, 404);
    assert.equal((await pair.same('bad JSON', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), ...admin }, body: '{"jsonrpc":' })).status, 400);
    assert.equal((await pair.same('wrong content type', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), ...admin, 'content-type': 'text/plain' }, body: modernCall(12) })).status, 415);
    assert.equal((await pair.same('unknown session', { method: 'POST', path: '/mcp', headers: { ...legacy, 'mcp-session-id': 'no-such-session' }, body: legacyCall(13) })).status, 404);
    assert.equal((await pair.same('GET /mcp without a session', { method: 'GET', path: '/mcp', headers: { ...admin, accept: 'text/event-stream' } })).status, 400);
    assert.equal((await pair.same('DELETE /mcp without a session', { method: 'DELETE', path: '/mcp', headers: admin })).status, 400);
    const preflight = await pair.same('CORS preflight', {
      method: 'OPTIONS',
      path: '/mcp',
      headers: { origin: ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key,mcp-protocol-version' },
    });
    assert.equal(preflight.status, 204);
    const cors = await pair.same('CORS POST', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), ...admin, origin: ORIGIN }, body: modernCall(14) });
    assert.equal(cors.status, 200);
    assert.equal(header(cors, 'access-control-allow-origin'), ORIGIN);
    assert.equal((await pair.same('foreign Origin', { method: 'POST', path: '/mcp', headers: { ...modernHeaders(), ...admin, origin: 'https://evil.example' }, body: modernCall(15) })).status, 403);

    // With the lane on, every POST reached the controller through it and never through Nest's
    // router (GET and DELETE still do); with it off, everything through Nest.
    assert.ok(pair.served.on.length >= 8);
    assert.deepEqual([...new Set(pair.served.on)].sort(), ['DELETE nest', 'GET nest', 'POST lane']);
    assert.deepEqual([...new Set(pair.served.off)].sort(), ['DELETE nest', 'GET nest', 'POST nest']);
  });
});

describe('the MCP lane charges rate limits as Nest’s router does', () => {
  let db: TestDatabase;
  const pair = new Pair();
  const LIMIT = 3;

  before(async () => {
    db = await createTestDatabase();
    await pair.start(db, {
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: [ADMIN_KEY, LIMITED_KEY].join(','),
      HTTP_TRUST_PROXY: 'true',
      HTTP_RATE_LIMIT_ENABLED: 'true',
      HTTP_RATE_LIMIT_WINDOW: '60000',
      HTTP_RATE_LIMIT_MAX_REQUESTS: String(LIMIT),
      HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED: '2',
    });
  });
  after(async () => {
    await pair.stop();
    await db.drop();
  });

  it(`the principal's budget: ${LIMIT} requests pass, the next is 429 with Retry-After (one charge per request)`, async () => {
    const post = { method: 'POST', path: '/mcp', headers: { ...json, 'x-api-key': LIMITED_KEY, 'x-forwarded-for': '10.9.0.1' }, body: initialize(1) };
    for (let i = 1; i <= LIMIT; i++) assert.equal((await pair.same(`request ${i}`, post)).status, 200, `request ${i}`);
    const refused = await pair.same(`request ${LIMIT + 1}`, post);
    assert.equal(refused.status, 429);
    assert.ok(Number(header(refused, 'retry-after')) >= 1);
    assert.equal(header(refused, 'ratelimit-policy'), `"principal";q=${LIMIT};w=60`);
    assert.deepEqual([...new Set(pair.served.on)], ['POST lane']);
  });

  it("the address's budget: failed authentications, then 429 before any credential is looked at", async () => {
    const post = (key: string) => ({ method: 'POST', path: '/mcp', headers: { ...json, 'x-api-key': key, 'x-forwarded-for': '10.9.0.2' }, body: initialize(1) });
    assert.equal((await pair.same('failed 1', post(WRONG_KEY))).status, 401);
    assert.equal((await pair.same('failed 2', post(WRONG_KEY))).status, 401);
    // The 401 is charged once it is written: give the charge its turn.
    await new Promise((r) => setTimeout(r, 50));
    const refused = await pair.same('after the budget', post(WRONG_KEY));
    assert.equal(refused.status, 429);
    assert.equal(header(refused, 'ratelimit-policy'), '"address";q=2;w=60');
    assert.equal((await pair.same('even a good key from that address', post(ADMIN_KEY))).status, 429);
  });
});
