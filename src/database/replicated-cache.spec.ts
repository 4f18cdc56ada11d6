import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeBus } from '../../test/support/fake-bus.js';
import { RESYNC_TOPIC, topic } from './change-bus.js';
import { ReplicatedCache } from './replicated-cache.js';

/** A loader whose reads the test releases one by one, returning the "row" as of the read's start. */
function controlledDb() {
  const rows = new Map<string, string>();
  const pending: { key: string; value: string | undefined; release: () => void }[] = [];
  let loads = 0;
  return {
    rows,
    pending,
    get loads() {
      return loads;
    },
    load: (key: string) => {
      loads++;
      const value = rows.get(key); // read at the start, as a query's snapshot would be
      return new Promise<string>((resolve, reject) => {
        pending.push({ key, value, release: () => (value === undefined ? reject(new Error(`no row ${key}`)) : resolve(value)) });
      });
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));
const CHANGED = topic<{ id: string }>('things.changed', (d) => (typeof (d as { id?: unknown })?.id === 'string' ? (d as { id: string }) : undefined));

describe('ReplicatedCache', () => {
  it('loads once for concurrent misses and serves later reads from memory', async () => {
    const db = controlledDb();
    db.rows.set('a', 'v1');
    const cache = new ReplicatedCache<string, string>({ name: 't', max: 10, ttlMs: 0, load: db.load });
    const reads = [cache.get('a'), cache.get('a'), cache.get('a')];
    await tick();
    assert.equal(db.pending.length, 1, 'single-flight');
    db.pending.shift()!.release();
    assert.deepEqual(await Promise.all(reads), ['v1', 'v1', 'v1']);
    assert.equal(await cache.get('a'), 'v1');
    assert.equal(db.loads, 1);
  });

  it('never stores a value read before an invalidation that arrived while the read was in flight', async () => {
    const bus = new FakeBus();
    const db = controlledDb();
    db.rows.set('a', 'old');
    const cache = new ReplicatedCache<string, string>({ name: 't', max: 10, ttlMs: 0, load: db.load }, bus).invalidateOn(CHANGED, (d) => d.id);
    const read = cache.get('a');
    await tick();
    // The change commits and its notification is handled while the old read is still in flight.
    db.rows.set('a', 'new');
    bus.emit('things.changed', { id: 'a' });
    db.pending.shift()!.release(); // the stale read returns "old"
    await tick();
    // The reader is not handed the stale value: it re-reads.
    assert.equal(db.pending.length, 1, 'a fresh read was started');
    db.pending.shift()!.release();
    assert.equal(await read, 'new');
    assert.equal(cache.peek('a'), 'new');
  });

  it('discards in-flight loads on a predicate invalidation and on a bus resync', async () => {
    const bus = new FakeBus();
    const db = controlledDb();
    db.rows.set('a', 'old');
    const cache = new ReplicatedCache<string, string>({ name: 't', max: 10, ttlMs: 0, load: db.load }, bus);
    for (const invalidate of [() => cache.invalidateWhere(() => false), () => bus.emit(RESYNC_TOPIC, null)]) {
      db.rows.set('a', 'old');
      cache.clear();
      const read = cache.get('a');
      await tick();
      db.rows.set('a', 'new');
      invalidate();
      db.pending.shift()!.release();
      await tick();
      db.pending.shift()!.release();
      assert.equal(await read, 'new');
    }
  });

  it('drops entries on their topic, by key or predicate, and ignores malformed payloads', async () => {
    const bus = new FakeBus();
    const db = controlledDb();
    db.rows.set('a', 'v1');
    db.rows.set('b', 'v1');
    const cache = new ReplicatedCache<string, string>({ name: 't', max: 10, ttlMs: 0, load: (k) => Promise.resolve(db.rows.get(k)!) }, bus).invalidateOn(CHANGED, (d) =>
      d.id === '*' ? { where: () => true } : d.id,
    );
    assert.equal(await cache.get('a'), 'v1');
    assert.equal(await cache.get('b'), 'v1');
    db.rows.set('a', 'v2');
    db.rows.set('b', 'v2');
    bus.emit('things.changed', { id: 42 });
    assert.equal(await cache.get('a'), 'v1', 'a malformed event invalidates nothing');
    bus.emit('things.changed', { id: 'a' });
    assert.equal(await cache.get('a'), 'v2');
    assert.equal(await cache.get('b'), 'v1');
    bus.emit('things.changed', { id: '*' });
    assert.equal(await cache.get('b'), 'v2');
  });

  it('passes a loader error to every waiting caller and caches nothing', async () => {
    const db = controlledDb();
    const cache = new ReplicatedCache<string, string>({ name: 't', max: 10, ttlMs: 0, load: db.load });
    const reads = [cache.get('x'), cache.get('x')];
    await tick();
    db.pending.shift()!.release();
    for (const r of reads) await assert.rejects(r, /no row x/);
    assert.equal(cache.size, 0);
  });

  it('expires entries after ttlMs and after a per-value ttl, on the injected clock', async () => {
    let now = 1_000;
    const clock = { now: () => now };
    let n = 0;
    const cache = new ReplicatedCache<string, { v: number; lifeMs?: number }>({
      name: 't',
      max: 10,
      ttlMs: 60_000,
      clock,
      load: (k) => Promise.resolve({ v: ++n, ...(k === 'short' ? { lifeMs: 5_000 } : {}) }),
      ttlOf: (value) => value.lifeMs,
    });
    assert.equal((await cache.get('long')).v, 1);
    assert.equal((await cache.get('short')).v, 2);
    now += 6_000;
    assert.equal((await cache.get('long')).v, 1, 'within ttlMs');
    assert.equal((await cache.get('short')).v, 3, 'past its own ttl');
    now += 60_000;
    assert.equal((await cache.get('long')).v, 4, 'past ttlMs');
  });
});
