import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { spawnGatehouse, stopAllGatehouses, waitForStatus, type GatehouseProcess } from '../support/process.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

const JWT_SECRET = 'replicas-caches-jwt-secret-0123456789abcdef';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;
const JSON_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
/** How soon (ms) after A answered a write every call on B must reflect it. */
const APPLY_WITHIN_MS = 1_000;

/** Local TCP ports of the sockets process `pid` holds (from /proc: its fds' socket inodes, matched in /proc/net/tcp{,6}). */
function localPortsOf(pid: number): number[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  const ports: number[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(table, 'utf8').split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length > 9 && inodes.has(cols[9])) ports.push(parseInt(cols[1].split(':').pop()!, 16));
    }
  }
  return ports;
}

interface Sample {
  /** ms (Date.now) when the call was sent and when it answered. */
  start: number;
  end: number;
  /** The echoed secret, or `refused` (HTTP error or JSON-RPC error). */
  seen: string;
}

/*
 * The proof of issue 9 across real processes: two Gatehouse processes on one PostgreSQL. A
 * serves the admin writes; B serves a continuous stream of MCP calls whose answers show the
 * current shared secret (injected into `echo`) and whether a key still works. Every change made
 * on A must be applied by B within a second and never reverted; after B's change-bus listener
 * is killed, B must still converge on a later change (reconnect + `$resync`).
 */
describe('replicated state across two processes', () => {
  let db: TestDatabase;
  after(async () => {
    await stopAllGatehouses();
    await db?.drop();
  });

  it('B applies secret changes, key revocations and deny policies made on A within 1 s, never reverts, and converges after losing its bus listener', async () => {
    db = await createTestDatabase();
    const env = { DATABASE_URL: db.url, MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY };
    const a = await spawnGatehouse(env);
    await waitForStatus(`${a.url}/readyz`, 200);
    const b = await spawnGatehouse({ ...env, DB_MIGRATE: 'false' });
    await waitForStatus(`${b.url}/readyz`, 200);
    const admin = { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' };

    const registered = await fetch(`${a.url}/api/v1/servers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'injector', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], inject: { message: '${secret:GREETING}' } }),
    });
    assert.equal(registered.status, 201, await registered.text());
    const setGreeting = async (value: string): Promise<number> => {
      const res = await fetch(`${a.url}/api/v1/servers/injector/secrets/GREETING`, { method: 'PUT', headers: admin, body: JSON.stringify({ value }) });
      assert.equal(res.status, 204);
      return Date.now();
    };
    await setGreeting('v1');
    const auth = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: 'streamer' })}` };
    const bearer = { ...auth, 'content-type': 'application/json' };
    const newKey = async () => {
      const res = await fetch(`${a.url}/api/v1/api-keys`, { method: 'POST', headers: bearer, body: JSON.stringify({ name: 'stream' }) });
      assert.equal(res.status, 201);
      return (await res.json()) as { id: string; key: string };
    };
    const steady = await newKey();
    const doomed = await newKey();
    const policed = await newKey();

    /** A legacy MCP session on B for `key`; `call()` echoes through `injector`. */
    const sessionOnB = async (key: string) => {
      const init = await fetch(`${b.url}/mcp`, {
        method: 'POST',
        headers: { ...JSON_HEADERS, 'x-api-key': key },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'replicas', version: '1' } } }),
      });
      assert.equal(init.status, 200);
      await init.text();
      const headers = { ...JSON_HEADERS, 'x-api-key': key, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-06-18' };
      let id = 1;
      return async (): Promise<Sample> => {
        const start = Date.now();
        const res = await fetch(`${b.url}/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: ++id, method: 'tools/call', params: { name: 'injector__echo', arguments: {} } }) });
        const text = await res.text();
        let seen = 'refused';
        if (res.status === 200) {
          const body = JSON.parse(text) as { result?: { isError?: boolean; content: { text: string }[] } };
          const echoed = body.result && !body.result.isError ? /Echo: (\S+)/.exec(body.result.content[0].text) : null;
          if (echoed) seen = echoed[1];
        }
        return { start, end: Date.now(), seen };
      };
    };
    await eventually('injector connected on B', async () => ((await (await sessionOnB(steady.key))()).seen === 'v1' ? true : undefined));
    const callSteady = await sessionOnB(steady.key);
    const callDoomed = await sessionOnB(doomed.key);
    const callPoliced = await sessionOnB(policed.key);

    // The stream: B is called continuously (paced, not synchronised, by a short pause) until stopped.
    const secretSamples: Sample[] = [];
    const keySamples: Sample[] = [];
    const policySamples: Sample[] = [];
    let streaming = true;
    const stream = (async () => {
      while (streaming) {
        secretSamples.push(await callSteady());
        keySamples.push(await callDoomed());
        policySamples.push(await callPoliced());
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    /** Waits until the stream has made a call that started after `t`. */
    const streamPast = (t: number) => eventually(`a call after ${t}`, () => (secretSamples.some((s) => s.start > t) && keySamples.some((s) => s.start > t) ? true : undefined), 15_000);

    let changedAt: number;
    let revokeSentAt: number;
    let revokedAt: number;
    let deniedAt: number;
    let lateChangeAt: number;
    try {
      await streamPast(Date.now() + 300);
      changedAt = await setGreeting('v2');
      await streamPast(changedAt + APPLY_WITHIN_MS + 300);
      revokeSentAt = Date.now();
      const revoke = await fetch(`${a.url}/api/v1/api-keys/${doomed.id}`, { method: 'DELETE', headers: auth });
      assert.equal(revoke.status, 204);
      revokedAt = Date.now();
      await streamPast(Date.now() + APPLY_WITHIN_MS + 300);

      // A deny policy for one key, added on A.
      const deny = await fetch(`${a.url}/api/v1/policies`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ subject: { apiKeyId: policed.id }, effect: 'deny', operations: ['tools/call'], targets: ['injector__*'], description: 'replicas test' }),
      });
      assert.equal(deny.status, 201, await deny.text());
      deniedAt = Date.now();
      await streamPast(deniedAt + APPLY_WITHIN_MS + 300);

      // Kill B's listening connection (found by B's own socket ports), and change the secret again at once.
      const ports = localPortsOf(b.child.pid!);
      const listener = await db.query<{ pid: number }>(
        "SELECT pid FROM pg_stat_activity WHERE application_name = 'gatehouse-bus' AND datname = current_database() AND client_port = ANY($1::int[])",
        [ports],
      );
      assert.equal(listener.length, 1, "exactly B's listener");
      const [{ terminated }] = await db.query<{ terminated: boolean }>('SELECT pg_terminate_backend($1) AS terminated', [listener[0].pid]);
      assert.equal(terminated, true);
      lateChangeAt = await setGreeting('v3');
      const converged = await eventually('B converges on v3', () => secretSamples.find((s) => s.start > lateChangeAt && s.seen === 'v3'), 15_000);
      await streamPast(converged.end + 500);
    } finally {
      streaming = false;
      await stream.catch(() => undefined);
    }

    // Secrets: v1 … v2 … v3, in order, never back; v2 everywhere from 1 s after A answered.
    const order = ['v1', 'v2', 'v3'];
    const seen = secretSamples.map((s) => s.seen);
    assert.ok(
      seen.every((v) => order.includes(v)),
      `every call succeeded with a known value: ${[...new Set(seen)].join(', ')}`,
    );
    for (let i = 1; i < seen.length; i++) assert.ok(order.indexOf(seen[i]) >= order.indexOf(seen[i - 1]), `call ${i} reverted from ${seen[i - 1]} to ${seen[i]}`);
    const late = secretSamples.filter((s) => s.start > changedAt + APPLY_WITHIN_MS && s.start < lateChangeAt);
    assert.ok(late.length > 3, 'the stream kept running');
    assert.ok(
      late.every((s) => s.seen === 'v2'),
      'v2 applied within 1 s',
    );
    assert.ok(secretSamples.some((s) => s.seen === 'v1' && s.end < changedAt), 'v1 was served before the change');

    // The revoked key: served before, refused from 1 s after the revocation, never served again.
    const firstRefused = keySamples.findIndex((s) => s.seen === 'refused');
    assert.ok(firstRefused > 0, 'the key worked before it was revoked');
    assert.ok(
      keySamples.slice(firstRefused).every((s) => s.seen === 'refused'),
      'once refused, never served again',
    );
    assert.ok(keySamples[firstRefused].end >= revokeSentAt, 'refused only after the revocation');
    const afterRevocation = keySamples.filter((s) => s.start > revokedAt + APPLY_WITHIN_MS);
    assert.ok(afterRevocation.length > 3 && afterRevocation.every((s) => s.seen === 'refused'), 'refused within 1 s');

    // The deny policy: allowed before, refused from 1 s after A answered, never allowed again.
    const firstDenied = policySamples.findIndex((s) => s.seen === 'refused');
    assert.ok(firstDenied > 0, 'the policed key could call before the policy');
    assert.ok(
      policySamples.slice(firstDenied).every((s) => s.seen === 'refused'),
      'once denied, never allowed again (not even after the listener was killed)',
    );
    const afterDeny = policySamples.filter((s) => s.start > deniedAt + APPLY_WITHIN_MS);
    assert.ok(afterDeny.length > 3 && afterDeny.every((s) => s.seen === 'refused'), 'denied within 1 s');

    // B noticed the lost listener (and reconnected: v3 arrived through the bus or the resync).
    await eventually('B logged the lost connection', () => (b.logs().some((l) => String(l.msg).startsWith('change bus listening connection lost')) ? true : undefined), 5_000);
    await stopBoth(a, b);
  });
});

async function stopBoth(a: GatehouseProcess, b: GatehouseProcess): Promise<void> {
  assert.equal(await b.stop(), 0);
  assert.equal(await a.stop(), 0);
}
