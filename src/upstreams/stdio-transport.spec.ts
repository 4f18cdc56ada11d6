import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { JSONRPCMessage } from '@modelcontextprotocol/client';
import type { ProcessSpawner } from './process-spawner.js';
import { MAX_STDERR_LINE, ProcessGroupStdioTransport } from './stdio-transport.js';

/** 'resolved' | 'rejected: …' | 'pending', once every already-queued callback has run. */
async function stateOf(promise: Promise<unknown>): Promise<string> {
  const pending = new Promise<string>((resolve) => setImmediate(() => resolve('pending')));
  return Promise.race([promise.then(() => 'resolved', (e: Error) => `rejected: ${e.message}`), pending]);
}

const big = (bytes: number): JSONRPCMessage => ({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'x', arguments: { pad: 'x'.repeat(bytes) } } });

/** A child whose stdin accepts nothing (full pipe) and that exits when told. */
function stuckChild(): { spawner: ProcessSpawner; exit: (code: number) => void } {
  const child = new EventEmitter() as ChildProcess & EventEmitter;
  Object.assign(child, {
    pid: undefined,
    exitCode: null,
    signalCode: null,
    stdin: new Writable({ highWaterMark: 16, write: () => undefined }), // never calls back: never drains
    stdout: new PassThrough(),
    stderr: new PassThrough(),
  });
  return {
    spawner: () => {
      setImmediate(() => child.emit('spawn'));
      return child;
    },
    exit: (code) => {
      Object.assign(child, { exitCode: code });
      child.emit('exit', code, null);
    },
  };
}

describe('ProcessGroupStdioTransport: pending writes', () => {
  it('settles a write waiting on a full stdin when the child exits (fake child)', async () => {
    const fake = stuckChild();
    const transport = new ProcessGroupStdioTransport({ command: 'fake', args: [], env: {}, spawner: fake.spawner });
    await transport.start();
    const write = transport.send(big(100));
    const second = transport.send(big(10));
    assert.equal(await stateOf(write), 'pending', 'the pipe is full: the write waits for drain');
    fake.exit(1);
    assert.match(await stateOf(write), /^rejected: process exited \(code 1\)/);
    assert.match(await stateOf(second), /^rejected: process exited/);
    assert.match(await stateOf(transport.send(big(1))), /^rejected: process exited/, 'later writes fail at once');
  });

  it('settles a write waiting on a full stdin when a real child dies', async () => {
    // A real process that never reads its stdin: a few MB fill the pipe.
    const transport = new ProcessGroupStdioTransport({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'], env: {} });
    const closed = new Promise<void>((resolve) => (transport.onclose = resolve));
    transport.onerror = () => undefined;
    await transport.start();
    const write = transport.send(big(4 * 1024 * 1024));
    assert.equal(await stateOf(write), 'pending');
    process.kill(transport.pid!, 'SIGKILL');
    await closed; // the exit was observed
    assert.match(await stateOf(write), /^rejected: /);
    await transport.close();
  });

  it('settles pending writes when the transport is closed', async () => {
    const fake = stuckChild();
    const transport = new ProcessGroupStdioTransport({ command: 'fake', args: [], env: {}, spawner: fake.spawner });
    await transport.start();
    const write = transport.send(big(100));
    const closing = transport.close();
    assert.match(await stateOf(write), /^rejected: the connection is closing/);
    fake.exit(0);
    await closing;
  });

  it('closes a child that never started, however often close() is called (the second call used to hang)', async () => {
    const transport = new ProcessGroupStdioTransport({ command: '/nonexistent/gatehouse-test-binary', args: [], env: {} });
    transport.onerror = () => undefined;
    await assert.rejects(transport.start(), /ENOENT/);
    assert.equal(await stateOf(transport.close()), 'resolved');
    assert.equal(await stateOf(transport.close()), 'resolved');
  });
});

describe('ProcessGroupStdioTransport: stderr lines', () => {
  it('keeps a character split across chunks whole, and drops the rest of an over-long line instead of emitting it as a line', async () => {
    const fake = stuckChild();
    const lines: string[] = [];
    const transport = new ProcessGroupStdioTransport({ command: 'fake', args: [], env: {}, spawner: fake.spawner, onStderr: (l) => lines.push(l) });
    await transport.start();
    const stderr = (await new Promise<ChildProcess>((resolve) => resolve(fake.spawner('fake', [], {})))).stderr as PassThrough;
    const secret = Buffer.from('token é-tail\n');
    const cut = secret.indexOf(0xc3) + 1; // inside the two bytes of é
    stderr.write(secret.subarray(0, cut));
    stderr.write(secret.subarray(cut));
    stderr.write(`${'x'.repeat(MAX_STDERR_LINE - 3)}SECRET-VALUE\nnext\n`);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(lines.map((l) => (l.length > 100 ? `${l.length}:${l.slice(-3)}` : l)), ['token é-tail', `${MAX_STDERR_LINE}:SEC`, 'next']);
    fake.exit(0);
    await transport.close();
  });
});
