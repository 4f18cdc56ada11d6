import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SdkServing } from '../../src/mcp/edge/sdk-serving.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';
import { ACCEPT, LEGACY } from '../support/mcp-raw.js';

/** One HTTP exchange as the client sees it, byte for byte (status, raw header lines, body). */
interface Exchange {
  status: number;
  headers: [string, string][];
  body: string;
}

/** Sends `body` (a string as is, else JSON) with `method` to `url`; the raw answer. */
function exchange(url: string, method: string, headers: Record<string, string>, body?: unknown): Promise<Exchange> {
  return new Promise((done, fail) => {
    const req = httpRequest(url, { method, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const pairs: [string, string][] = [];
        for (let i = 0; i < res.rawHeaders.length; i += 2) pairs.push([res.rawHeaders[i], res.rawHeaders[i + 1]]);
        done({ status: res.statusCode!, headers: pairs, body: Buffer.concat(chunks).toString('utf8') });
      });
    });
    req.on('error', fail);
    if (body !== undefined) req.write(typeof body === 'string' ? body : JSON.stringify(body));
    req.end();
  });
}

/** An exchange with what differs per replica or per call masked: Date, the request id, the session token. */
function comparable(x: Exchange): Exchange {
  const masked = new Set(['date', 'x-request-id', 'mcp-session-id']);
  return { ...x, headers: x.headers.map(([k, v]) => [k, masked.has(k.toLowerCase()) ? '…' : v]) };
}

const sessionOf = (x: Exchange) => x.headers.find(([k]) => k.toLowerCase() === 'mcp-session-id')?.[1];
const JSON_HEADERS = { 'content-type': 'application/json', accept: ACCEPT };

function initialize(params: Record<string, unknown>, id: unknown = 1): Record<string, unknown> {
  return { jsonrpc: '2.0', id, method: 'initialize', params };
}
/** Sessions per client address (both replicas, one database): the last test reaches it. */
const CAP = 80;
const PARAMS = { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'lifecycle', version: '1' } };

interface Case {
  title: string;
  path?: string;
  method?: string;
  headers?: Record<string, string>;
  body?: unknown;
  /** Whether the lifecycle path answers it (else the SDK path does, on both replicas). */
  lifecycle: boolean;
}

const INITIALIZE_CASES: Case[] = [
  ...['2025-11-25', '2025-06-18', '2025-03-26', '2024-11-05', '2024-10-07'].map((v) => ({ title: `initialize ${v}`, body: initialize({ ...PARAMS, protocolVersion: v }), lifecycle: true })),
  { title: 'initialize, a modern revision (negotiated down)', body: initialize({ ...PARAMS, protocolVersion: '2026-07-28' }), lifecycle: true },
  { title: 'initialize, an unknown revision', body: initialize({ ...PARAMS, protocolVersion: '1999-01-01' }), lifecycle: true },
  { title: 'initialize, a string id', body: initialize(PARAMS, 'init-1'), lifecycle: true },
  { title: 'initialize, an id above 2^53', body: '{"jsonrpc":"2.0","id":9007199254740993,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"n","version":"1"}}}', lifecycle: true },
  {
    title: 'initialize, client capabilities and a titled client',
    body: initialize({ ...PARAMS, capabilities: { roots: { listChanged: true }, sampling: {}, elicitation: { form: {} } }, clientInfo: { name: 'c', version: '2', title: 'Client' } }),
    lifecycle: true,
  },
  { title: 'initialize on /mcp/<server> (upstream subscribes)', path: '/mcp/everything', body: initialize(PARAMS), lifecycle: true },
  { title: 'initialize on /mcp/<server> (upstream does not subscribe)', path: '/mcp/arrays', body: initialize(PARAMS), lifecycle: true },
  { title: 'initialize with an MCP-Protocol-Version header', headers: { ...JSON_HEADERS, 'mcp-protocol-version': LEGACY }, body: initialize(PARAMS), lifecycle: true },
  { title: 'initialize naming a session (ignored)', headers: { ...JSON_HEADERS, 'mcp-session-id': 'whatever' }, body: initialize(PARAMS), lifecycle: true },
  // Left to the SDK:
  { title: 'initialize with _meta', body: initialize({ ...PARAMS, _meta: { progressToken: 1 } }), lifecycle: false },
  { title: 'initialize with an unknown capability', body: initialize({ ...PARAMS, capabilities: { future: {} } }), lifecycle: false },
  { title: 'initialize with an extra member', body: { ...initialize(PARAMS), extra: 1 }, lifecycle: false },
  { title: 'initialize, Accept without text/event-stream (406)', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: initialize(PARAMS), lifecycle: false },
  { title: 'initialize without clientInfo (400)', body: initialize({ protocolVersion: LEGACY, capabilities: {} }), lifecycle: false },
  { title: 'initialize with a null id', body: initialize(PARAMS, null), lifecycle: false },
  { title: 'initialize in a batch (2025-03-26)', body: [initialize(PARAMS)], lifecycle: false },
  { title: 'initialize with a modern MCP-Protocol-Version header', headers: { ...JSON_HEADERS, 'mcp-protocol-version': '2026-07-28' }, body: initialize(PARAMS), lifecycle: false },
];

/**
 * The legacy lifecycle path ({@link LegacyLifecycle}: initialize, notifications/initialized,
 * DELETE without the SDK) promises the SDK path's answers to the byte. Two replicas on one
 * database, one with MCP_FAST_PATH=false, get the same requests; status, header lines (Date,
 * request id and session token masked) and body must be equal, and a count of the SDK's
 * serving proves which path answered.
 */
describe('legacy lifecycle path and SDK path give the same answers', () => {
  let db: TestDatabase;
  let fast: TestApp;
  let sdk: TestApp;
  const served = new Map<TestApp, number>();

  before(async () => {
    db = await createTestDatabase();
    const env = { HTTP_MAX_SESSIONS_PER_ADDRESS: String(CAP), HTTP_SESSION_RECLAIM_IDLE: '3600000' };
    fast = await startTestApp(db.url, env);
    sdk = await startTestApp(db.url, { ...env, MCP_FAST_PATH: 'false' });
    for (const body of [
      { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
      { name: 'arrays', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/array-output-upstream.mjs')] },
    ]) {
      const res = await fetch(`${fast.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201, await res.text());
    }
    for (const app of [fast, sdk]) {
      for (const name of ['everything', 'arrays']) {
        await eventually(`${name} connected`, async () => {
          const v = (await (await fetch(`${app.url}/api/v1/servers/${name}`)).json()) as { status: { state: string } };
          return v.status.state === 'connected' ? true : undefined;
        });
      }
      // Count the exchanges the SDK path serves.
      const serving = app.app.get(SdkServing);
      const handlersFor = serving.handlersFor.bind(serving);
      served.set(app, 0);
      serving.handlersFor = (scope: string) => {
        served.set(app, served.get(app)! + 1);
        return handlersFor(scope);
      };
    }
  });
  after(async () => {
    await fast.shutdown('test done');
    await sdk.shutdown('test done');
    await db.drop();
  });

  /** Sends `c` to both replicas; asserts the same answer and the path that served it; the two answers. */
  async function both(c: Case): Promise<[Exchange, Exchange]> {
    const before = [served.get(fast)!, served.get(sdk)!];
    const send = (app: TestApp) => exchange(`${app.url}${c.path ?? '/mcp'}`, c.method ?? 'POST', c.headers ?? JSON_HEADERS, c.body);
    const [a, b] = [await send(fast), await send(sdk)];
    assert.deepEqual(comparable(a), comparable(b), `${c.title}: the same answer`);
    assert.equal(served.get(sdk)! - before[1], 1, `${c.title}: MCP_FAST_PATH=false serves it through the SDK`);
    assert.equal(served.get(fast)! - before[0], c.lifecycle ? 0 : 1, `${c.title}: served by the ${c.lifecycle ? 'lifecycle' : 'SDK'} path`);
    return [a, b];
  }

  it('initialize: versions, scopes, capabilities, ids, and what is left to the SDK', async () => {
    for (const c of INITIALIZE_CASES) {
      const [a, b] = await both(c);
      assert.equal(Boolean(sessionOf(a)), Boolean(sessionOf(b)), `${c.title}: a session on both or neither`);
    }
    const [a] = await both(INITIALIZE_CASES[0]);
    assert.match(a.body, /^event: message\ndata: \{"result":\{"protocolVersion":"2025-11-25","capabilities":/);
  });

  it('initialize stores the same session row on both paths', async () => {
    const params = { protocolVersion: '2025-03-26', capabilities: { roots: { listChanged: true }, sampling: {} }, clientInfo: { name: 'row-check', version: '9', title: 'Row' } };
    const [a, b] = await both({ title: 'initialize for the row', path: '/mcp/everything', body: initialize(params), lifecycle: true });
    const rows = await db.query(
      "SELECT principal, endpoint, protocol_version, client_info, capabilities, client_address, closed_at FROM mcp_sessions WHERE client_info->>'name' = 'row-check' ORDER BY created_at",
    );
    assert.equal(rows.length, 2);
    assert.deepEqual(rows[0], rows[1]);
    assert.equal(rows[0].protocol_version, '2025-03-26');
    assert.equal(rows[0].closed_at, null);
    assert.ok(sessionOf(a) && sessionOf(b));
  });

  it('notifications/initialized and DELETE in a session; unknown and missing sessions left to the SDK path', async () => {
    const open = async (app: TestApp) => sessionOf(await exchange(`${app.url}/mcp`, 'POST', JSON_HEADERS, initialize(PARAMS)))!;
    const [sa, sb] = [await open(fast), await open(sdk)];
    const initialized = { jsonrpc: '2.0', method: 'notifications/initialized' };
    const inSession = (token: string, extra: Record<string, string> = {}) => ({ ...JSON_HEADERS, 'mcp-protocol-version': LEGACY, 'mcp-session-id': token, ...extra });
    // Each replica gets its own session (the same request otherwise).
    const pair = async (c: Omit<Case, 'headers'>, headers: (token: string) => Record<string, string>) => {
      const before = [served.get(fast)!, served.get(sdk)!];
      const send = (app: TestApp, token: string) => exchange(`${app.url}${c.path ?? '/mcp'}`, c.method ?? 'POST', headers(token), c.body);
      const [a, b] = [await send(fast, sa), await send(sdk, sb)];
      assert.deepEqual(comparable(a), comparable(b), `${c.title}: the same answer`);
      assert.equal(served.get(sdk)! - before[1], 1, `${c.title}: SDK path on MCP_FAST_PATH=false`);
      assert.equal(served.get(fast)! - before[0], c.lifecycle ? 0 : 1, `${c.title}: served by the ${c.lifecycle ? 'lifecycle' : 'SDK'} path`);
      return a;
    };
    assert.equal((await pair({ title: 'initialized', body: initialized, lifecycle: true }, (t) => inSession(t))).status, 202);
    await pair({ title: 'initialized with params', body: { ...initialized, params: {} }, lifecycle: true }, (t) => inSession(t));
    await pair({ title: 'initialized without MCP-Protocol-Version', body: initialized, lifecycle: true }, (t) => ({ ...JSON_HEADERS, 'mcp-session-id': t }));
    await pair({ title: 'initialized with _meta', body: { ...initialized, params: { _meta: { note: 1 } } }, lifecycle: false }, (t) => inSession(t));
    await pair({ title: 'initialized with a modern MCP-Protocol-Version', body: initialized, lifecycle: false }, (t) => inSession(t, { 'mcp-protocol-version': '2026-07-28' }));
    await pair({ title: 'initialized, an unsupported MCP-Protocol-Version (400)', body: initialized, lifecycle: false }, (t) => inSession(t, { 'mcp-protocol-version': '1999-01-01' }));
    await pair({ title: 'initialized, Accept without text/event-stream (406)', body: initialized, lifecycle: false }, (t) => inSession(t, { accept: 'application/json' }));
    await pair({ title: 'initialized with an id (a request: -32601)', body: { ...initialized, id: 3 }, lifecycle: false }, (t) => inSession(t));
    await pair({ title: 'initialized, unknown session (404)', body: initialized, lifecycle: false }, () => inSession('no-such-session'));
    await pair({ title: 'initialized without a session (400)', body: initialized, lifecycle: false }, () => JSON_HEADERS);
    await pair({ title: 'initialized on another scope (404)', path: '/mcp/everything', body: initialized, lifecycle: false }, (t) => inSession(t));
    assert.equal((await pair({ title: 'DELETE', method: 'DELETE', lifecycle: true }, (t) => ({ 'mcp-session-id': t }))).status, 200);
    assert.equal((await pair({ title: 'DELETE again (404)', method: 'DELETE', lifecycle: false }, (t) => ({ 'mcp-session-id': t }))).status, 404);
    await pair({ title: 'initialized after DELETE (404)', body: initialized, lifecycle: false }, (t) => inSession(t));
    await pair({ title: 'DELETE without a session (400)', method: 'DELETE', lifecycle: false }, () => ({}));
  });

  it('initialize at the per-address session cap: the same 429 and Retry-After, no session', async () => {
    const openCount = async () => Number((await db.query<{ n: string }>('SELECT count(*) AS n FROM mcp_sessions WHERE closed_at IS NULL'))[0].n);
    for (let open = await openCount(); open < CAP; open++) {
      const x = await exchange(`${fast.url}/mcp`, 'POST', JSON_HEADERS, initialize(PARAMS));
      assert.equal(x.status, 200, x.body);
    }
    const before = [served.get(fast)!, served.get(sdk)!];
    const [a, b] = [await exchange(`${fast.url}/mcp`, 'POST', JSON_HEADERS, initialize(PARAMS)), await exchange(`${sdk.url}/mcp`, 'POST', JSON_HEADERS, initialize(PARAMS))];
    assert.equal(served.get(fast), before[0], 'the lifecycle path refused it');
    assert.equal(served.get(sdk), before[1] + 1);
    assert.equal(a.status, 429, a.body);
    // Retry-After counts down in seconds: the two calls may straddle a second.
    const retry = (x: Exchange) => Number(x.headers.find(([k]) => k === 'retry-after')?.[1]);
    assert.ok(retry(a) > 0 && Math.abs(retry(a) - retry(b)) <= 1, `${retry(a)} vs ${retry(b)}`);
    const noRetry = (x: Exchange) => ({ ...comparable(x), headers: comparable(x).headers.map(([k, v]): [string, string] => [k, k === 'retry-after' ? '…' : v]) });
    assert.deepEqual(noRetry(a), noRetry(b));
    assert.equal(await openCount(), CAP);
  });
});
