import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import pg from 'pg';
import { after, describe, it } from 'node:test';
import { createTestDatabase } from '../support/database.js';
import { holdRequest, INITIALIZE, MCP_HEADERS } from '../support/held-request.js';
import { spawnGatehouse, stopAllGatehouses, waitForStatus } from '../support/process.js';
import { eventually } from '../support/upstreams.js';

describe('graceful shutdown of a real process', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    await stopAllGatehouses();
    for (const c of cleanups.reverse()) await c();
  });

  it('SIGTERM with a kept-alive client connection: the in-flight request completes, its connection closes, exit 0 well before SHUTDOWN_TIMEOUT', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const gh = await spawnGatehouse({ DATABASE_URL: db.url, SHUTDOWN_TIMEOUT: '20000' });
    await waitForStatus(`${gh.url}/readyz`, 200);

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const held = holdRequest(`${gh.url}/mcp`, INITIALIZE, agent, MCP_HEADERS);
    await held.accepted;

    const signalled = Date.now();
    const exited = gh.stop('SIGTERM');
    await eventually('shutdown to begin', () => (gh.logs().some((l) => String(l.msg).startsWith('shutting down')) ? true : undefined));
    const response = await held.release();
    assert.equal(response.status, 200, response.body);
    assert.ok(response.headers['mcp-session-id'], 'the request was fully served (a session was created)');
    assert.equal(response.headers.connection, 'close', 'the response announces that the connection closes');
    await held.connectionClosed;

    assert.equal(await exited, 0, 'drained cleanly');
    const took = Date.now() - signalled;
    assert.ok(took < 10_000, `exited ${took} ms after SIGTERM: the kept-alive connection held the drain to SHUTDOWN_TIMEOUT`);
    assert.ok(gh.logs().some((l) => l.msg === 'Gatehouse stopped' && l.drained === true));
  });

  it('SIGTERM while starting (listening, migrations waiting on another replica) is acted on once started: graceful, exit 0', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    // Another replica migrating: it holds the migration lock, so this start waits after listening.
    const other = new pg.Client({ connectionString: db.url });
    await other.connect();
    cleanups.push(() => other.end().catch(() => undefined));
    await other.query("SELECT pg_advisory_lock(hashtext('gatehouse:migrations'))");

    const gh = await spawnGatehouse({ DATABASE_URL: db.url });
    const exited = gh.stop('SIGTERM');
    await eventually('the signal to be deferred', () => (gh.logs().some((l) => String(l.msg).startsWith('SIGTERM while starting')) ? true : undefined));
    await other.query("SELECT pg_advisory_unlock(hashtext('gatehouse:migrations'))");
    assert.equal(await exited, 0, `exit code 0 (null: killed by SIGTERM before the handlers were installed)\n${gh.stderr()}`);
    assert.ok(gh.logs().some((l) => l.msg === 'Gatehouse stopped' && l.drained === true));
  });
});
