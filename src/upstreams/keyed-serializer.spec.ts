import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeyedSerializer } from './keyed-serializer.js';

function latch(): { promise: Promise<void>; open: () => void } {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

describe('KeyedSerializer', () => {
  it('never overlaps runs of one key, and coalesces calls made during a run into one more run', async () => {
    const serializer = new KeyedSerializer<string>();
    const gates = [latch(), latch()];
    let running = 0;
    let maxRunning = 0;
    const runs: string[] = [];
    const task = (label: string) => async () => {
      running++;
      maxRunning = Math.max(maxRunning, running);
      runs.push(label);
      await gates[runs.length - 1]?.promise;
      running--;
    };
    const first = serializer.run('a', task('1'));
    const second = serializer.run('a', task('2'));
    const third = serializer.run('a', task('3'));
    const other = serializer.run('b', () => Promise.resolve());
    await other;
    assert.deepEqual(runs, ['1'], 'the later calls wait for the first run');
    gates[0].open();
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(runs, ['1', '3'], 'one more run, with the latest task');
    gates[1].open();
    await Promise.all([first, second, third]);
    assert.equal(maxRunning, 1);
    assert.equal(serializer.busy('a'), false);
  });

  it('rejects the callers with the error of the last run', async () => {
    const serializer = new KeyedSerializer<string>();
    await assert.rejects(serializer.run('a', () => Promise.reject(new Error('boom'))), /boom/);
    await serializer.run('a', () => Promise.resolve());
  });
});
