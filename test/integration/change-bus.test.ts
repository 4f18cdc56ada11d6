import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PgChangeBus, RESYNC_TOPIC, type ChangeEvent } from '../../src/database/change-bus.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

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
    // Kill b's listening connection from outside, as a failover or idle-kill would.
    await pool.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gatehouse-bus' AND datname = current_database()");
    const event = await resync;
    assert.equal(event.topic, RESYNC_TOPIC, 'subscribers of any topic hear the resync');
    // After the reconnect, events flow again.
    for (let i = 0; i < 50 && !(a.listening && b.listening); i++) await new Promise((r) => setTimeout(r, 50));
    const again = nextEvent(b, 'after.reconnect');
    await a.publish('after.reconnect', 1);
    assert.equal((await again).data, 1);
  });
});
