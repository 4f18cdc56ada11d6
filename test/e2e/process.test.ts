import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createTestDatabase } from '../support/database.js';
import { freePort, spawnGatehouse, stopAllGatehouses, waitForStatus } from '../support/process.js';
import { EVERYTHING, eventually, readStreamUntil } from '../support/upstreams.js';

describe('the gatehouse process', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    await stopAllGatehouses();
    for (const c of cleanups.reverse()) await c();
  });

  it('serves against an external PostgreSQL, logs JSON with request ids, exits 0 on SIGTERM', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const gh = await spawnGatehouse({ DATABASE_URL: db.url });
    await waitForStatus(`${gh.url}/readyz`, 200);
    const res = await fetch(`${gh.url}/nowhere`, { headers: { 'x-request-id': 'proc-1' } });
    assert.equal(res.status, 404);
    assert.equal(await gh.stop('SIGTERM'), 0);

    const logs = gh.logs();
    assert.ok(logs.length > 3, 'logs are JSON lines in production');
    assert.ok(logs.every((l) => typeof l.level === 'string' && typeof l.time === 'string'));
    assert.ok(logs.some((l) => l.requestId === 'proc-1' && l.msg === 'request completed'));
    assert.ok(logs.some((l) => l.msg === 'Gatehouse stopped' && l.drained === true));
    assert.ok(!gh.stdout().includes(new URL(db.url).password || '\u0000'), 'the database password is never logged');
  });

  it('with no DATABASE_URL starts an embedded PostgreSQL, keeps its data across restarts, stops it on exit', async () => {
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-embedded-'));
    chmodSync(root, 0o755); // as root, PostgreSQL runs as the postgres user, who must reach the data directory
    cleanups.push(() => rmSync(root, { recursive: true, force: true }));
    const dir = join(root, 'postgres');
    const env = { EMBEDDED_POSTGRES_DIR: dir, EMBEDDED_POSTGRES_PORT: String(await freePort()) };

    const first = await spawnGatehouse(env, 120_000);
    await waitForStatus(`${first.url}/readyz`, 200, 60_000);
    const notice = first.logs().filter((l) => String(l.msg).startsWith('DATABASE_URL is not set'));
    assert.equal(notice.length, 1, 'exactly one line says the embedded database is used');
    // The log line may land a moment after readiness turns 200.
    await eventually('the migrations log line', () => (first.logs().some((l) => String(l.msg).startsWith('applied ')) ? true : undefined));
    const pid = Number(readFileSync(join(dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    assert.equal(await first.stop('SIGTERM'), 0);
    assert.equal(existsSync(`/proc/${pid}`), false, 'the embedded PostgreSQL process is gone');
    assert.equal(existsSync(join(dir, 'postmaster.pid')), false, 'PostgreSQL shut down cleanly');

    const second = await spawnGatehouse(env, 120_000);
    await waitForStatus(`${second.url}/readyz`, 200, 60_000);
    await eventually('data (and schema) survived the restart', () => (second.logs().some((l) => l.msg === 'database schema is current') ? true : undefined));
    assert.equal(await second.stop('SIGINT'), 0);
  });

  it('two processes on one database: a legacy session continues on the other, and list-changed reaches a stream held there', async () => {
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const a = await spawnGatehouse({ DATABASE_URL: db.url });
    const b = await spawnGatehouse({ DATABASE_URL: db.url, DB_MIGRATE: 'false' });
    cleanups.push(async () => {
      await a.stop();
      await b.stop();
    });
    await waitForStatus(`${b.url}/readyz`, 200);
    const register = (name: string) =>
      fetch(`${a.url}/api/v1/servers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name, transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
      });
    assert.equal((await register('first')).status, 201);

    const json = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const init = await fetch(`${a.url}/mcp`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'p', version: '1' } } }),
    });
    assert.equal(init.status, 200);
    await init.text();
    const session = { 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-06-18' };

    // The session opened on A answers on B, with B's own connection to the upstream.
    const listed = await eventually('tools on B', async () => {
      const res = await fetch(`${b.url}/mcp`, { method: 'POST', headers: { ...json, ...session }, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }) });
      const body = (await res.json()) as { result?: { tools: { name: string }[] } };
      return res.status === 200 && (body.result?.tools.length ?? 0) > 5 ? body.result!.tools : undefined;
    });
    assert.ok(listed.some((t) => t.name === 'first__echo'));

    const stream = await fetch(`${b.url}/mcp`, { headers: { accept: 'text/event-stream', ...session } });
    assert.equal(stream.status, 200);
    const heard = readStreamUntil(stream, 'notifications/tools/list_changed', 15_000);
    assert.equal((await register('second')).status, 201);
    assert.match(await heard, /notifications\/tools\/list_changed/);
  });
});
