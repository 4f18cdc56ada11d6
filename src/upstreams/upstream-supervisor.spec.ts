import { ReadinessGates } from '../database/readiness-gates.js';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { PinoLogger } from 'nestjs-pino';
import { FakeClock } from '../../test/support/fake-clock.js';
import type { AppConfig } from '../config/config.schema.js';
import type { ChangeBusService } from '../database/change-bus.service.js';
import type { ProcessSpawner } from './process-spawner.js';
import { UpstreamCatalog } from './upstream-catalog.service.js';
import type { UpstreamPoolService } from './upstream-pool.service.js';
import type { UpstreamRegistry } from './upstream-registry.service.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { UpstreamSupervisor } from './upstream-supervisor.service.js';
import type { ListingStore } from './listing-store.js';

/** A fake stdio MCP server in memory: answers initialize and tools/list, nothing else. No real process (pid undefined). */
function fakeServerProcess(): ChildProcess {
  const child = new EventEmitter() as ChildProcess & EventEmitter;
  const stdout = new PassThrough();
  let pending = '';
  const stdin = new Writable({
    write(chunk: Buffer, _encoding, done) {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) {
        const msg = JSON.parse(line) as { id?: number; method: string; params?: { protocolVersion?: string } };
        if (msg.id === undefined) continue;
        const result =
          msg.method === 'initialize'
            ? { protocolVersion: msg.params?.protocolVersion, capabilities: { tools: {} }, serverInfo: { name: 'fake', version: '1' } }
            : msg.method === 'tools/list'
              ? { tools: [{ name: 'noop', inputSchema: { type: 'object' } }] }
              : undefined;
        const reply = result ? { jsonrpc: '2.0', id: msg.id, result } : { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } };
        stdout.write(`${JSON.stringify(reply)}\n`);
      }
      done();
    },
  });
  Object.assign(child, { pid: undefined, exitCode: null, signalCode: null, stdin, stdout, stderr: new PassThrough() });
  setImmediate(() => child.emit('spawn'));
  return child;
}

function latch<T>(): { promise: Promise<T>; open: (value: T) => void } {
  let open: (value: T) => void = () => undefined;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}

const row = (args: string[]) =>
  Object.assign(new UpstreamServerEntity(), {
    name: 'x',
    transport: 'stdio' as const,
    command: 'fake',
    args,
    env: {},
    cwd: null,
    url: null,
    headers: {},
    enabled: true,
    description: null,
    timeoutMs: 5_000,
    toolFilter: { allow: [], deny: [] },
    inject: {},
    updatedAt: new Date(),
  });

describe('UpstreamSupervisor', () => {
  it('reconciles one server single-flight: two concurrent changes start one new process, not two', async () => {
    let spawned = 0;
    const spawner: ProcessSpawner = () => {
      spawned++;
      return fakeServerProcess();
    };
    const reads: ReturnType<typeof latch<UpstreamServerEntity>>[] = [];
    const registry = {
      stop: () => undefined,
      findRow: () => {
        const read = latch<UpstreamServerEntity>();
        reads.push(read);
        return read.promise;
      },
    } as unknown as UpstreamRegistry;
    const pool = { retire: () => Promise.resolve() } as unknown as UpstreamPoolService;
    const config = { upstreams: { stdioIdleTtlMs: 0 } } as AppConfig;
    const logger = { setContext: () => undefined, info: () => undefined, warn: () => undefined, debug: () => undefined, error: () => undefined } as unknown as PinoLogger;
    const supervisor = new UpstreamSupervisor(registry, pool, new UpstreamCatalog(logger), config, {} as ChangeBusService, new FakeClock(), spawner, logger, new ReadinessGates(), {} as ListingStore);

    await supervisor.reconcile('x', row(['v1']));
    const first = supervisor.connection('x')!;
    await eventuallyConnected(first);
    assert.equal(spawned, 1);

    // Two changes arrive together; both re-read the row, which now says v2.
    const a = supervisor.reconcile('x');
    const b = supervisor.reconcile('x');
    await new Promise((r) => setImmediate(r));
    assert.equal(reads.length, 1, 'the second reconcile waits for the first (single-flight)');
    reads[0].open(row(['v2']));
    await new Promise((r) => setImmediate(r));
    await eventually(() => reads.length === 2, () => `reads: ${reads.length}`);
    reads[1].open(row(['v2']));
    await Promise.all([a, b]);
    const second = supervisor.connection('x')!;
    await eventuallyConnected(second);
    assert.equal(first.state, 'closed');
    assert.equal(spawned, 2, 'one process for the change, none leaked');
    await supervisor.beforeApplicationShutdown();
    assert.equal(second.state, 'closed');
  });
});

/** Lets queued callbacks run until `probe` holds (bounded; no timers). */
async function eventually(probe: () => boolean, what: () => string = () => 'condition'): Promise<void> {
  for (let i = 0; i < 1_000 && !probe(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(probe(), what());
}

async function eventuallyConnected(c: { state: string }): Promise<void> {
  await eventually(() => c.state === 'connected');
}
