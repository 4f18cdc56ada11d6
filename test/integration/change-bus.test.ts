import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { backoffDelay } from '../../src/database/backoff.js';
import { PgChangeBus, RESYNC_TOPIC, type ChangeEvent } from '../../src/database/change-bus.js';
import { ReadinessGates } from '../../src/database/readiness-gates.js';
import { adminUrl, createTestDatabase, type TestDatabase } from '../support/database.js';
import { ManualTimers } from '../support/manual-timers.js';
import { until } from '../support/until.js';

/** Resolves with the next event a subscription sees, or rejects after `ms`. */
function nextEvent(bus: PgChangeBus, topic: string, ms = 5_000): Promise<ChangeEvent> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no "${topic}" event within ${ms} ms`));
    }, ms);
    const off = bus.subscribe(topic, (event) => {
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

describe('change bus (LISTEN/NOTIFY)', () => {
  let db: TestDatabase;
  let pool: pg.Pool;
  const buses: PgChangeBus[] = [];
  const bus = () => {
    const b = new PgChangeBus({ connectionString: db.url, query: (sql, params) => pool.query(sql, params), backoff: { min: 20, max: 200 } });
    buses.push(b);
    return b;
  };

  before(async () => {
    db = await createTestDatabase();
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    // These tests terminate backends on purpose; an idle pooled client that is among them (or
    // is cut by the database's drop) emits 'error' on the pool — unheard, that is an uncaught
    // exception in whichever test created the client (seen once: "terminating connection due
    // to administrator command" after the last test). The queries that matter fail on their own.
    pool.on('error', () => undefined);
  });
  after(async () => {
    await Promise.all(buses.map((b) => b.close()));
    await pool.end();
    await db.drop();
  });

  it('delivers each connection’s events to the other, marked local or remote', async () => {
    const a = bus();
    const b = bus();
    await Promise.all([a.start(), b.start()]);

    const atB = nextEvent(b, 'servers.changed');
    const atA = nextEvent(a, 'servers.changed');
    await a.publish('servers.changed', { name: 'github' });
    const [seenByB, seenByA] = await Promise.all([atB, atA]);
    assert.deepEqual(seenByB.data, { name: 'github' });
    assert.equal(seenByB.origin, a.instanceId);
    assert.equal(seenByB.local, false);
    assert.equal(seenByA.local, true);

    const back = nextEvent(a, 'sessions.revoked');
    await b.publish('sessions.revoked', { sessionId: 's1' });
    assert.deepEqual((await back).data, { sessionId: 's1' });
  });

  it('does not deliver other topics to a subscriber', async () => {
    const a = bus();
    await a.start();
    const seen: string[] = [];
    a.subscribe('only.this', (e) => seen.push(e.topic));
    const done = nextEvent(a, 'marker');
    await a.publish('something.else');
    await a.publish('only.this');
    await a.publish('marker');
    await done;
    assert.deepEqual(seen, ['only.this']);
  });

  it('rejects a payload NOTIFY cannot carry', async () => {
    const a = bus();
    await assert.rejects(a.publish('big', { blob: 'x'.repeat(10_000) }), /limit is 7900/);
  });

  it('reconnects after losing its connection and tells subscribers to resync', async () => {
    const a = bus();
    const b = bus();
    await Promise.all([a.start(), b.start()]);
    const resync = nextEvent(b, 'cache.x');
    // Kill both listening connections from outside, as a failover or idle-kill would — only
    // these two: other tests' buses on this database are still open (closed in after()).
    await pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [[a.backendPid, b.backendPid]]);
    const event = await resync;
    assert.equal(event.topic, RESYNC_TOPIC, 'subscribers of any topic hear the resync');
    // After the reconnect, events flow again.
    for (let i = 0; i < 50 && !(a.listening && b.listening); i++) await new Promise((r) => setTimeout(r, 50));
    const again = nextEvent(b, 'after.reconnect');
    await a.publish('after.reconnect', 1);
    assert.equal((await again).data, 1);
  });

  /**
   * SIGSTOPs the listening connection's backend — a server that stops answering without closing
   * the socket, which no 'error'/'end' event reveals. Only ever a backend of this test's own
   * database and of a gatehouse-bus connection (never the postmaster: other suites share it).
   */
  async function pause(pid: number): Promise<() => void> {
    const rows = await pool.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND datname = current_database() AND application_name = 'gatehouse-bus'",
      [pid],
    );
    assert.equal(rows.rows[0].n, 1, `pid ${pid} is this test's listening backend`);
    process.kill(pid, 'SIGSTOP');
    let resumed = false;
    return () => {
      if (resumed) return;
      resumed = true;
      process.kill(pid, 'SIGCONT');
    };
  }

  function watchedBus(timers: ManualTimers) {
    const gate = new ReadinessGates().register('changeBus');
    const b = new PgChangeBus({
      connectionString: db.url,
      query: (sql, params) => pool.query(sql, params),
      backoff: { min: 100, max: 1_000 },
      liveness: { intervalMs: 1_000, timeoutMs: 500 },
      timers,
      random: () => 0.5,
      status: gate,
    });
    buses.push(b);
    return { bus: b, gate };
  }

  it('detects a paused listener within interval + timeout, reports it to readiness, reconnects and resyncs', async () => {
    const timers = new ManualTimers();
    const { bus: a, gate } = watchedBus(timers);
    assert.equal(gate.state, 'pending');
    await a.start();
    assert.equal(gate.state, 'ok');
    const pid = a.backendPid!;
    const resync = nextEvent(a, 'any.topic', 10_000);
    const resume = await pause(pid);
    try {
      timers.advance(999);
      assert.equal(gate.state, 'ok', 'no check before the interval');
      timers.advance(1); // the liveness query goes out; the paused backend cannot answer it
      timers.advance(499);
      assert.equal(gate.state, 'ok', 'the check still has time');
      assert.ok(a.listening);
      timers.advance(1);
      assert.equal(gate.state, 'error', 'noticed at interval + timeout');
      assert.match(gate.reason ?? '', /no answer to the liveness query within 500 ms; reconnecting/);
      assert.equal(a.listening, false);
      // Reconnect after the jittered backoff: attempt 0 → 100 ms nominal, random 0.5 → 75 ms.
      assert.equal(timers.pending()[0], 75);
      timers.advance(75);
      const event = await resync;
      assert.equal(event.topic, RESYNC_TOPIC);
      assert.equal(gate.state, 'ok');
      assert.ok(a.listening);
      assert.notEqual(a.backendPid, pid, 'a new connection');
    } finally {
      resume();
    }
    const again = nextEvent(a, 'after.pause');
    await a.publish('after.pause', 2);
    assert.equal((await again).data, 2);
  });

  it('keeps checking a healthy listener without reconnecting', async () => {
    const timers = new ManualTimers();
    const { bus: a, gate } = watchedBus(timers);
    await a.start();
    const pid = a.backendPid;
    let resyncs = 0;
    a.subscribe(RESYNC_TOPIC, () => resyncs++);
    for (let i = 0; i < 3; i++) {
      timers.advance(1_000);
      // The answer arrives: the next check is scheduled one interval later.
      await until(() => timers.pending()[0] === 1_000);
      assert.deepEqual(timers.pending(), [1_000]);
    }
    assert.equal(gate.state, 'ok');
    assert.equal(a.backendPid, pid);
    assert.equal(resyncs, 0);
  });

  it('backs off exponentially while reconnecting fails, and closes without waiting on a paused server', async () => {
    const timers = new ManualTimers();
    const { bus: a, gate } = watchedBus(timers);
    await a.start();
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    try {
      await pool.query('SELECT pg_terminate_backend($1)', [a.backendPid]);
      await until(() => gate.state === 'error');
      assert.match(gate.reason ?? '', /listening connection lost/);
      // Only the retry is pending once the dropped client has finished closing (its bounded
      // close timer is cleared when the socket is gone, a moment after the gate changed).
      const onlyPending = (delay: number) => until(() => timers.pending().length === 1 && timers.pending()[0] === delay, 5_000, `only a retry after ${delay} ms pending`);
      const failures: string[] = [];
      for (const attempt of [0, 1, 2, 3]) {
        const delay = backoffDelay(attempt, { min: 100, max: 1_000 }, () => 0.5);
        await onlyPending(delay);
        timers.advance(delay);
        // The attempt fails (connections refused); the gate says so and the next retry waits longer.
        await onlyPending(backoffDelay(attempt + 1, { min: 100, max: 1_000 }, () => 0.5));
        failures.push(gate.reason ?? '');
      }
      await onlyPending(750); // capped at max (1,000 ms nominal)
      assert.ok(failures.every((r) => /reconnecting failed: .*not currently accepting connections/.test(r)), failures.join('\n'));
      assert.equal(gate.state, 'error');
    } finally {
      await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    const resync = nextEvent(a, 'x', 10_000);
    timers.advance(750);
    await resync;
    assert.equal(gate.state, 'ok');

    // A paused server must not hold up shutdown: close() drops the socket after the timeout.
    const resume = await pause(a.backendPid!);
    try {
      let closed = false;
      const closing = a.close().then(() => (closed = true));
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(closed, false, 'waits for a graceful goodbye first');
      timers.advance(500);
      await closing;
    } finally {
      resume();
    }
  });
});
