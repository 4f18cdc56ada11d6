import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/upstreams.js';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'limits', version: '1' } },
};

describe('legacy session limits', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { HTTP_SESSION_TIMEOUT: '1500', HTTP_SESSION_CLEANUP_INTERVAL: '1000', HTTP_MAX_CONCURRENT_SESSIONS: '3' });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const open = () => fetch(`${app.url}/mcp`, { method: 'POST', headers: HEADERS, body: JSON.stringify(initialize) });
  const ping = (session: string) =>
    fetch(`${app.url}/mcp`, {
      method: 'POST',
      headers: { ...HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'ping' }),
    });

  it('caps open sessions (strategy none: per client address, HTTP_MAX_SESSIONS_PER_ADDRESS defaulting to HTTP_MAX_CONCURRENT_SESSIONS) with 429 and a JSON-RPC error', async () => {
    const sessions: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await open();
      assert.equal(res.status, 200);
      await res.text();
      sessions.push(res.headers.get('mcp-session-id')!);
    }
    const fourth = await open();
    assert.equal(fourth.status, 429);
    const body = (await fourth.json()) as { error: { message: string } };
    assert.match(body.error.message, /too many MCP sessions .*HTTP_MAX_SESSIONS_PER_ADDRESS/);
    // Ending one frees a place.
    await fetch(`${app.url}/mcp`, { method: 'DELETE', headers: { 'mcp-session-id': sessions[0] } });
    const again = await open();
    assert.equal(again.status, 200);
    await again.text();
  });

  it('ends idle sessions after HTTP_SESSION_TIMEOUT: 404, and the sweep closes the rows', async () => {
    await eventually('sessions expire and are swept', async () => {
      const [row] = await db.query<{ open: string }>('SELECT count(*) FILTER (WHERE closed_at IS NULL)::text AS open FROM mcp_sessions');
      return Number(row.open) === 0 ? true : undefined;
    }, 10_000);
    const res = await open();
    const session = res.headers.get('mcp-session-id')!;
    await res.text();
    assert.equal((await ping(session)).status, 200);
    await new Promise((r) => setTimeout(r, 1_700));
    assert.equal((await ping(session)).status, 404, 'an idle session is gone');
  });
});
