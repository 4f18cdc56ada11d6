import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, describe, it } from 'node:test';
import { FakeClock } from '../../test/support/fake-clock.js';
import { ConnectionStateMachine, IllegalTransitionError, TRANSITIONS, type ConnectionState } from './connection-state.js';
import { connectionKey, UpstreamConnection, UpstreamConnectionClosedError } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';

const SLOW = resolve('test/fixtures/slow-upstream.mjs');
const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

function slowServer(extra: Partial<UpstreamServerEntity> = {}): UpstreamServerEntity {
  return Object.assign(new UpstreamServerEntity(), {
    name: 'slow',
    transport: 'stdio' as const,
    command: process.execPath,
    args: [SLOW],
    env: { CANCEL_LOG: '/dev/null' },
    cwd: null,
    url: null,
    headers: {},
    enabled: true,
    timeoutMs: 60_000,
    toolFilter: { allow: [], deny: [] },
    inject: {},
    ...extra,
  });
}

/** 'resolved' | 'rejected: …' | 'pending', once every queued callback has run. */
async function stateOf(promise: Promise<unknown>): Promise<string> {
  const pending = new Promise<string>((r) => setImmediate(() => r('pending')));
  return Promise.race([promise.then(() => 'resolved', (e: Error) => `rejected: ${e.message}`), pending]);
}

describe('UpstreamConnection', () => {
  const open: UpstreamConnection[] = [];
  after(() => Promise.all(open.map((c) => c.close('test over'))));
  const connectionTo = async (server: UpstreamServerEntity, clock?: FakeClock, idleTtlMs?: number) => {
    const c = new UpstreamConnection(server, { log: quiet, onToolsChanged: () => undefined, clock, idleTtlMs });
    open.push(c);
    await c.connect();
    assert.equal(c.state, 'connected', c.getStatus().lastError ?? '');
    return c;
  };

  it('fails a call in flight at once, saying why, when it is closed (was: waited out its timeout)', { timeout: 15_000 }, async () => {
    const c = await connectionTo(slowServer());
    const call = c.callTool({ name: 'wait', arguments: { ms: 600_000 } }, {});
    await new Promise((r) => setImmediate(r));
    assert.equal(c.inflightCount, 1);
    const closing = c.close('server configuration changed');
    await assert.rejects(call, (error: Error) => {
      assert.ok(error instanceof UpstreamConnectionClosedError);
      assert.match(error.message, /closed before it answered \(server configuration changed\)/);
      return true;
    });
    assert.equal(c.inflightCount, 0);
    await closing;
    assert.equal(c.state, 'closed');
    assert.equal(c.getStatus().lastError, 'the connection was closed (server configuration changed)', 'a later caller learns why too');
    await assert.rejects(c.callTool({ name: 'wait', arguments: { ms: 1 } }, {}), UpstreamConnectionClosedError);
  });

  it('a call whose signal aborts fails (as the SDK client reports the abort), and leaves nothing behind: not counted, its caller unregistered, the listener removed', { timeout: 15_000 }, async () => {
    const c = await connectionTo(slowServer());
    const callers = (c as unknown as { callers: { callers: Set<unknown> } }).callers.callers;
    const abort = new AbortController();
    const caller = { capabilities: {}, request: () => Promise.reject(new Error('unused')) };
    const call = c.callTool({ name: 'wait', arguments: { ms: 600_000 } }, { signal: abort.signal, caller });
    await new Promise((r) => setImmediate(r));
    assert.equal(c.inflightCount, 1);
    assert.ok(callers.has(caller), 'registered while the call runs');
    const reason = new Error('the client went away');
    abort.abort(reason);
    await assert.rejects(call);
    assert.equal(c.inflightCount, 0);
    assert.equal(callers.has(caller), false);
    // Already aborted: fails without waiting for the upstream's answer.
    await assert.rejects(c.callTool({ name: 'wait', arguments: { ms: 600_000 } }, { signal: AbortSignal.abort(reason) }));
    assert.equal(c.inflightCount, 0);
  });

  it('withClient: an SDK request in flight is counted and fails at once on close', { timeout: 15_000 }, async () => {
    const c = await connectionTo(slowServer());
    const request = c.withClient(undefined, (client, signal) => client.callTool({ name: 'wait', arguments: { ms: 600_000 } }, { signal, timeout: 600_000 }));
    await new Promise((r) => setImmediate(r));
    assert.equal(c.inflightCount, 1);
    void c.close('the server was disabled');
    await assert.rejects(request, /closed before it answered \(the server was disabled\)/);
  });

  it('never parks an idle stdio server while a call is in flight', { timeout: 15_000 }, async () => {
    const clock = new FakeClock();
    const c = await connectionTo(slowServer(), clock, 1_000);
    const call = c.callTool({ name: 'wait', arguments: { ms: 300 } }, {});
    await new Promise((r) => setImmediate(r));
    clock.advance(10_000);
    assert.equal(c.state, 'connected', 'a call is in flight: not parked');
    assert.equal(await stateOf(call), 'pending');
    assert.deepEqual(((await call).content as { text: string }[])[0].text, 'waited');
    clock.advance(999);
    assert.equal(c.state, 'connected', 'the TTL counts from the end of the last call');
    clock.advance(1_000);
    assert.equal(c.state, 'idle');
    await c.close('test');
  });

  it('counts the idle TTL from when the process is up: a slow start is not parked the moment it is ready', { timeout: 15_000 }, async () => {
    const clock = new FakeClock();
    const c = new UpstreamConnection(slowServer(), { log: quiet, onToolsChanged: () => undefined, clock, idleTtlMs: 1_000 });
    open.push(c);
    clock.advance(10_000); // the start took longer than the TTL
    await c.connect();
    assert.equal(c.state, 'connected');
    clock.advance(999);
    assert.equal(c.state, 'connected');
    clock.advance(1);
    assert.equal(c.state, 'idle');
    await c.close('test');
  });

  it('takes changes that need no reconnect in place, and refuses others', async () => {
    const server = slowServer();
    const c = new UpstreamConnection(server, { log: quiet, onToolsChanged: () => undefined });
    c.update(Object.assign(new UpstreamServerEntity(), server, { description: 'new', timeoutMs: 5_000, toolFilter: { allow: ['x'], deny: [] } }));
    assert.equal(c.server.timeoutMs, 5_000);
    assert.throws(() => c.update(Object.assign(new UpstreamServerEntity(), server, { args: ['other'] })), /needs a new connection/);
    assert.notEqual(connectionKey(server), connectionKey(Object.assign(new UpstreamServerEntity(), server, { enabled: false })));
    await c.close('test');
  });
});

describe('ConnectionStateMachine', () => {
  it('allows exactly the transitions in the table', () => {
    const states = Object.keys(TRANSITIONS) as ConnectionState[];
    for (const from of states) {
      for (const to of states) {
        const machine = new ConnectionStateMachine(from);
        if (TRANSITIONS[from].includes(to)) {
          machine.to(to);
          assert.equal(machine.state, to);
        } else {
          assert.throws(() => machine.to(to), IllegalTransitionError, `${from} → ${to}`);
        }
      }
    }
    assert.deepEqual(TRANSITIONS.closed, [], 'closed is final');
  });
});
