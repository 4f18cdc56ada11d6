import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { bufferedDestination, type LogDestination } from './destination.js';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-destination-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Resolves once `stream` has written everything and closed. */
const ended = (stream: LogDestination) =>
  new Promise<void>((resolve, reject) => {
    stream.once('close', () => resolve());
    stream.once('error', reject);
    stream.end();
  });

/** Lines of many lengths (1 to ~3,000 bytes), some with 2-, 3- and 4-byte UTF-8 characters. */
function lines(count: number): string[] {
  const chars = ['a', 'é', '€', '𝄞', '"', '\\'];
  return Array.from({ length: count }, (_, i) => `{"n":${i},"s":"${chars[i % chars.length].repeat((i * 37) % 1000)}"}\n`);
}

describe('the buffered log destination', () => {
  it('writes every line, in order, when thousands arrive while a write is in flight (batched in chunks of at most 16 KiB)', async () => {
    const file = join(dir, 'batched.log');
    const stream = bufferedDestination({ dest: file, sync: false });
    await new Promise((resolve) => stream.once('ready', resolve));
    const writes: number[] = [];
    stream.on('write', (n: number) => writes.push(n));
    const all = lines(5000);
    // All in one turn of the event loop: the first starts a write, the rest wait behind it.
    for (const line of all) stream.write(line);
    await ended(stream);
    const expected = Buffer.from(all.join(''), 'utf8');
    assert.ok(readFileSync(file).equals(expected));
    assert.ok(writes.length < all.length / 4, `${writes.length} writes for ${all.length} lines: not batched`);
    assert.ok(Math.max(...writes) <= 16 * 1024 + 3000, `a write of ${Math.max(...writes)} bytes`);
  });

  it('writes the same bytes as pino’s default destination', async () => {
    const mine = join(dir, 'mine.log');
    const theirs = join(dir, 'theirs.log');
    const a = bufferedDestination({ dest: mine, sync: false });
    const b = pino.destination({ dest: theirs, sync: false });
    const fixed = () => ',"time":"2026-11-30T08:00:00.000Z"';
    const loggers = [pino({ base: { service: 'gatehouse' }, timestamp: fixed }, a), pino({ base: { service: 'gatehouse' }, timestamp: fixed }, b)];
    for (const logger of loggers) {
      for (let i = 0; i < 2000; i++) logger.info({ requestId: `r-${i}`, req: { url: `/mcp?x=${'€'.repeat(i % 50)}` }, res: { statusCode: 200 } }, 'request completed');
      logger.warn('ünïcödé 𝄞 and "quotes"');
    }
    await Promise.all([ended(a), ended(b)]);
    assert.ok(readFileSync(mine).equals(readFileSync(theirs)));
  });

  it('flushes synchronously what is pending', () => {
    const file = join(dir, 'sync.log');
    const stream = bufferedDestination({ dest: file, sync: true });
    const all = lines(300);
    for (const line of all) stream.write(line);
    stream.flushSync();
    assert.equal(readFileSync(file, 'utf8'), all.join(''));
    stream.destroy();
  });

  it('leaves nothing behind when the process exits right after logging (stdout a pipe)', () => {
    const module = JSON.stringify(fileURLToPath(new URL('./destination.js', import.meta.url)));
    const script = `
      const { stdoutDestination } = await import(${module});
      const { pino } = await import('pino');
      const logger = pino({ base: undefined, timestamp: false }, stdoutDestination());
      for (let i = 0; i < 20000; i++) logger.info({ i, s: 'x€'.repeat(i % 40) }, 'line');
      process.exit(0);`;
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(child.status, 0, child.stderr);
    const out = child.stdout.split('\n');
    assert.equal(out.pop(), '');
    assert.equal(out.length, 20000);
    out.forEach((text, i) => assert.deepEqual(JSON.parse(text), { level: 30, i, s: 'x€'.repeat(i % 40), msg: 'line' }));
  });
});
