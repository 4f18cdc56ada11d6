import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FakeClock } from '../../test/support/fake-clock.js';
import { ConnectionPool, PoolExhaustedError } from './connection-pool.js';
import type { UpstreamConnection } from './upstream-connection.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';

function latch(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** Fake connections whose `connect` waits for a latch per owner; counts running processes. */
function fakes() {
  const gates = new Map<string, ReturnType<typeof latch>>();
  const state = { created: 0, running: 0, maxRunning: 0, closedWith: [] as string[] };
  const create = (template: UpstreamServerEntity, owner: string) => {
    const server = template.name;
    state.created++;
    let started = false;
    const connection = {
      server: { name: server },
      owner,
      connect: async () => {
        started = true;
        state.running++;
        state.maxRunning = Math.max(state.maxRunning, state.running);
        await gates.get(owner)?.promise;
      },
      close: async (reason: string) => {
        state.closedWith.push(`${owner}: ${reason}`);
        await Promise.resolve();
        if (started) state.running--;
        started = false;
      },
    };
    return connection as unknown as UpstreamConnection;
  };
  return { gates, state, create };
}

const values = { env: {}, headers: {} };
const S = { name: 's' } as UpstreamServerEntity;

describe('ConnectionPool', () => {
  it('shares one connection between concurrent first calls of a caller and never exceeds max', async () => {
    const { gates, state, create } = fakes();
    const pool = new ConnectionPool({ max: 2, idleTtlMs: 60_000, clock: new FakeClock(), create });
    (await pool.acquire(S, 'x', values)).release();
    (await pool.acquire(S, 'y', values)).release();

    const k = latch();
    gates.set('k', k);
    const first = pool.acquire(S, 'k', values);
    const second = pool.acquire(S, 'k', values);
    k.open();
    const [a, b] = await Promise.all([first, second]);
    assert.equal(a.connection, b.connection, 'one connection for one key');
    assert.equal(state.created, 3);
    a.release();
    b.release();
    (await pool.acquire(S, 'l', values)).release();
    assert.ok(state.maxRunning <= 2, `at most GATEHOUSE_POOL_MAX running (saw ${state.maxRunning})`);
    assert.equal(state.running, 2);
    assert.equal(pool.size, 2);
  });

  it('counts connections being started: a full pool of starting ones refuses the next caller', async () => {
    const { gates, create } = fakes();
    const pool = new ConnectionPool({ max: 2, idleTtlMs: 60_000, clock: new FakeClock(), create });
    const slow = latch();
    gates.set('a', slow);
    gates.set('b', slow);
    const a = pool.acquire(S, 'a', values);
    const b = pool.acquire(S, 'b', values);
    await assert.rejects(pool.acquire(S, 'c', values), PoolExhaustedError);
    slow.open();
    await Promise.all([a, b]);
  });

  it('starts a connection that needs room only after the evicted one has stopped', async () => {
    const { state, create } = fakes();
    const pool = new ConnectionPool({ max: 1, idleTtlMs: 60_000, clock: new FakeClock(), create });
    (await pool.acquire(S, 'a', values)).release();
    (await pool.acquire(S, 'b', values)).release();
    assert.equal(state.maxRunning, 1);
    assert.deepEqual(state.closedWith, ['a: evicted to make room (GATEHOUSE_POOL_MAX)']);
  });

  it('reaps only connections unused for the idle TTL and without calls in flight', async () => {
    const { state, create } = fakes();
    const clock = new FakeClock();
    const pool = new ConnectionPool({ max: 5, idleTtlMs: 1_000, clock, create });
    const busy = await pool.acquire(S, 'busy', values);
    (await pool.acquire(S, 'idle', values)).release();
    clock.advance(5_000);
    await pool.reap();
    assert.deepEqual(state.closedWith, ['idle: unused for GATEHOUSE_POOL_IDLE_TTL']);
    busy.release();
    busy.release(); // idempotent
    clock.advance(1_000);
    await pool.reap();
    assert.equal(pool.size, 0);
  });

  it('retires the connections of one owner, with the reason', async () => {
    const { state, create } = fakes();
    const pool = new ConnectionPool({ max: 5, idleTtlMs: 1_000, clock: new FakeClock(), create });
    (await pool.acquire(S, 'a', values)).release();
    (await pool.acquire(S, 'b', values)).release();
    await pool.retire('s', 'a', 'its secrets changed');
    assert.deepEqual(state.closedWith, ['a: its secrets changed']);
    assert.equal(pool.size, 1);
  });

  it('after a resync retires idle connections only', async () => {
    const { state, create } = fakes();
    const pool = new ConnectionPool({ max: 5, idleTtlMs: 1_000, clock: new FakeClock(), create });
    const busy = await pool.acquire(S, 'busy', values);
    (await pool.acquire(S, 'idle', values)).release();
    await pool.retireIdle('its secrets may have changed');
    assert.deepEqual(state.closedWith, ['idle: its secrets may have changed']);
    assert.equal(pool.size, 1);
    busy.release();
  });
});
