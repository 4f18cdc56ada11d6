import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Global, Module } from '@nestjs/common';
import { NotificationFanout } from '../../src/mcp/edge/notification-fanout.js';
import { SESSION_CLOCK, type SessionClock } from '../../src/sessions/sessions.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'inspector-cli', version: '0.1' } },
};
const ENV = {
  // The default strategy `none`: every client is the one anonymous principal.
  HTTP_TRUST_PROXY: 'true',
  HTTP_MAX_CONCURRENT_SESSIONS: '3',
  HTTP_MAX_SESSIONS_PER_ADDRESS: '3',
  HTTP_SESSION_RECLAIM_IDLE: '60000',
};

interface SessionList {
  items: { id: string; principal: string; clientName: string; clientAddress: string; lastSeenAt: string }[];
  total: number;
}

describe('sessions opened without credentials: per-address caps, idle reclaim, admin API', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, ENV);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const open = (from: string) => fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...HEADERS, 'x-forwarded-for': from }, body: JSON.stringify(initialize) });
  async function opened(from: string): Promise<string> {
    const res = await open(from);
    assert.equal(res.status, 200);
    await res.text();
    return res.headers.get('mcp-session-id')!;
  }
  const ping = (session: string, from: string) =>
    fetch(`${app.url}/mcp`, {
      method: 'POST',
      headers: { ...HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18', 'x-forwarded-for': from },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
    });
  const closeAll = () => db.query('UPDATE mcp_sessions SET closed_at = now() WHERE closed_at IS NULL');

  it('caps them per client address, not for every client at once; the 429 carries Retry-After', async () => {
    for (let i = 0; i < 3; i++) await opened('10.5.0.1');
    const refused = await open('10.5.0.1');
    assert.equal(refused.status, 429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(retryAfter >= 1 && retryAfter <= 121, `Retry-After ${refused.headers.get('retry-after')}`);
    const body = (await refused.json()) as { jsonrpc: string; error: { message: string } };
    assert.equal(body.jsonrpc, '2.0');
    assert.match(body.error.message, /HTTP_MAX_SESSIONS_PER_ADDRESS.*HTTP_SESSION_RECLAIM_IDLE/);
    // Another client (address) is not locked out by the first one's sessions.
    await opened('10.5.0.2');
    await closeAll();
  });

  it('reclaims the oldest idle session before refusing, also after a restart', async () => {
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) sessions.push(await opened('10.6.0.1'));
    // The clients never send DELETE; two of the sessions have been idle for an hour (oldest first).
    await db.query("UPDATE mcp_sessions SET last_seen_at = now() - interval '2 hours' WHERE closed_at IS NULL AND client_address = '10.6.0.1' AND last_seen_at = (SELECT min(last_seen_at) FROM mcp_sessions WHERE closed_at IS NULL AND client_address = '10.6.0.1')");
    const [{ second }] = await db.query<{ second: string }>(
      "SELECT id AS second FROM mcp_sessions WHERE closed_at IS NULL AND client_address = '10.6.0.1' AND last_seen_at > now() - interval '1 hour' ORDER BY last_seen_at, id LIMIT 1",
    );
    await db.query("UPDATE mcp_sessions SET last_seen_at = now() - interval '1 hour' WHERE id = $1", [second]);
    await app.shutdown('restart');
    app = await startTestApp(db.url, ENV);
    const fresh = await opened('10.6.0.1');
    // The least recently used one was reclaimed (its client gets 404 and starts over); the rest stay.
    // (Pinging a session uses it, so only the reclaimed one is pinged here.)
    assert.equal((await ping(sessions[0], '10.6.0.1')).status, 404);
    const open6 = () => db.query<{ id: string }>("SELECT id FROM mcp_sessions WHERE closed_at IS NULL AND client_address = '10.6.0.1'");
    assert.equal((await open6()).length, 3);
    assert.equal((await ping(fresh, '10.6.0.1')).status, 200);
    // The next one takes the other idle session; then nothing is idle: 429.
    await opened('10.6.0.1');
    assert.ok(!(await open6()).some((r) => r.id === second), 'the second idle session was reclaimed next');
    assert.equal((await ping(sessions[2], '10.6.0.1')).status, 200, 'the active one stays');
    assert.equal((await open('10.6.0.1')).status, 429);
    await closeAll();
  });

  it('GET /api/v1/sessions lists open sessions (filter by principal, paginated, never the token); DELETE ends one everywhere', async () => {
    const a = await opened('10.7.0.1');
    const b = await opened('10.7.0.2');
    const list = async (query: string) => {
      const res = await fetch(`${app.url}/api/v1/sessions${query}`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.ok(!text.includes(a) && !text.includes(b), 'no session token in the listing');
      return JSON.parse(text) as SessionList;
    };
    const all = await list('?principal=none:anonymous');
    assert.equal(all.total, 2);
    assert.deepEqual(all.items.map((s) => [s.principal, s.clientName, s.clientAddress]), [
      ['none:anonymous', 'inspector-cli', '10.7.0.1'],
      ['none:anonymous', 'inspector-cli', '10.7.0.2'],
    ]);
    const page = await list('?limit=1&offset=1');
    assert.equal(page.total, 2);
    assert.deepEqual(page.items.map((s) => s.clientAddress), ['10.7.0.2']);
    assert.equal((await list('?principal=api_key:nobody')).total, 0);
    const bad = await fetch(`${app.url}/api/v1/sessions?limit=0`);
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /^limit: /);
    // A NUL in the filter is a 400 naming the field, not a 500 from PostgreSQL (found trying it as a new user).
    for (const principal of ['%00', 'a%00b']) {
      const nul = await fetch(`${app.url}/api/v1/sessions?principal=${principal}`);
      assert.equal(nul.status, 400, principal);
      assert.match(((await nul.json()) as { error: { message: string } }).error.message, /^principal: .*NUL/);
    }

    const del = await fetch(`${app.url}/api/v1/sessions/${all.items[0].id}`, { method: 'DELETE' });
    assert.equal(del.status, 204);
    assert.equal((await ping(a, '10.7.0.1')).status, 404, 'the client sees its session gone');
    assert.equal((await ping(b, '10.7.0.2')).status, 200);
    assert.equal((await fetch(`${app.url}/api/v1/sessions/${all.items[0].id}`, { method: 'DELETE' })).status, 404);
    assert.equal((await fetch(`${app.url}/api/v1/sessions/not-a-session`, { method: 'DELETE' })).status, 404);
    assert.equal((await list('')).total, 1);
  });
});

describe('a session whose client only listens on its GET stream is in use, not idle', () => {
  let db: TestDatabase;
  let app: TestApp;
  let time = Date.now();
  const clock: SessionClock = { now: () => time };
  @Global()
  @Module({ providers: [{ provide: SESSION_CLOCK, useValue: clock }], exports: [SESSION_CLOCK] })
  class FakeSessionClock {}
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { ...ENV, HTTP_MAX_SESSIONS_PER_ADDRESS: '1', SHUTDOWN_TIMEOUT: '500' }, { imports: [FakeSessionClock] });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const open = () => fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...HEADERS, 'x-forwarded-for': '10.10.0.1' }, body: JSON.stringify(initialize) });

  it('the stream keep-alive marks the session used, so it is not reclaimed while the stream is open', async () => {
    const first = await open();
    assert.equal(first.status, 200);
    await first.text();
    const session = first.headers.get('mcp-session-id')!;
    const abort = new AbortController();
    const stream = await fetch(`${app.url}/mcp`, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18', 'x-forwarded-for': '10.10.0.1' },
      signal: abort.signal,
    });
    assert.equal(stream.status, 200);
    // Three minutes without a request, the stream open all along (its keep-alives ran).
    time += 180_000;
    await app.app.get(NotificationFanout).heartbeat();
    const refused = await open();
    assert.equal(refused.status, 429, 'the listening session is in use: not reclaimed');
    await refused.text();
    // Once the stream is gone and the session idle, it is reclaimed.
    abort.abort();
    time += 180_000;
    const second = await open();
    assert.equal(second.status, 200);
    await second.text();
  });
});
