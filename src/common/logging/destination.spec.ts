import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { LineDestination } from './destination.js';

const dir = mkdtempSync(join(tmpdir(), 'gatehouse-destination-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Resolves once `stream` has written everything (it leaves its descriptor open). */
const ended = (stream: LineDestination) =>
  new Promise<void>((resolve, reject) => {
    stream.once('close', () => resolve());
    stream.once('error', reject);
    stream.end();
  });

/** Lines of many lengths (to ~3,000 bytes), some with 2-, 3- and 4-byte UTF-8 characters. */
function lines(count: number): string[] {
  const chars = ['a', 'é', '€', '𝄞', '"', '\\'];
  return Array.from({ length: count }, (_, i) => `{"n":${i},"s":"${chars[i % chars.length].repeat((i * 37) % 1000)}"}\n`);
}

const MODULE = JSON.stringify(fileURLToPath(new URL('./destination.js', import.meta.url)));

/** A child process logging through `stdoutDestination()`; `body` has `logger` in scope. */
const childScript = (body: string) => `
  const { stdoutDestination } = await import(${MODULE});
  const { pino } = await import('pino');
  const logger = pino({ base: undefined, timestamp: false }, stdoutDestination());
  ${body}`;

describe('the log destination', () => {
  it('writes the lines of one event-loop turn together when the turn ends: every line, in order, byte for byte', async () => {
    const file = join(dir, 'batched.log');
    const fd = openSync(file, 'w');
    const stream = new LineDestination(fd);
    const all = lines(5000);
    for (const line of all) stream.write(line);
    assert.equal(readFileSync(file).length, 0, 'written before the turn ended');
    await new Promise((resolve) => setImmediate(resolve));
    assert.ok(readFileSync(file).equals(Buffer.from(all.join(''), 'utf8')));
    stream.write('{"last":true}\n');
    await ended(stream);
    closeSync(fd);
    assert.ok(readFileSync(file, 'utf8').endsWith('}\n{"last":true}\n'));
  });

  it('writes the same bytes as pino’s default destination', async () => {
    const mine = join(dir, 'mine.log');
    const theirs = join(dir, 'theirs.log');
    const fd = openSync(mine, 'w');
    const a = new LineDestination(fd);
    const b = pino.destination({ dest: theirs, sync: false });
    const fixed = () => ',"time":"2026-11-30T08:00:00.000Z"';
    for (const logger of [pino({ base: { service: 'gatehouse' }, timestamp: fixed }, a), pino({ base: { service: 'gatehouse' }, timestamp: fixed }, b)]) {
      for (let i = 0; i < 2000; i++) logger.info({ requestId: `r-${i}`, req: { url: `/mcp?x=${'€'.repeat(i % 50)}` }, res: { statusCode: 200 } }, 'request completed');
      logger.warn('ünïcödé 𝄞 and "quotes"');
    }
    await ended(a);
    await new Promise<void>((resolve) => (b.once('close', () => resolve()), b.end()));
    closeSync(fd);
    assert.ok(readFileSync(mine).equals(readFileSync(theirs)));
  });

  it('flushes synchronously what is queued', () => {
    const file = join(dir, 'sync.log');
    const fd = openSync(file, 'w');
    const stream = new LineDestination(fd);
    const all = lines(300);
    for (const line of all) stream.write(line);
    stream.flushSync();
    assert.equal(readFileSync(file, 'utf8'), all.join(''));
    closeSync(fd);
  });

  it('emits a write error other than EPIPE', async () => {
    const fd = openSync(join(dir, 'closed.log'), 'w');
    closeSync(fd);
    const stream = new LineDestination(fd);
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => stream.once('error', resolve));
    stream.write('{"a":1}\n');
    assert.equal((await failed).code, 'EBADF');
  });

  it('leaves nothing behind when the process exits right after logging (stdout a pipe)', () => {
    const script = childScript(`for (let i = 0; i < 20000; i++) logger.info({ i, s: 'x€'.repeat(i % 40) }, 'line'); process.exit(0);`);
    const child = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
    assert.equal(child.status, 0, child.stderr);
    const out = child.stdout.split('\n');
    assert.equal(out.pop(), '');
    assert.equal(out.length, 20000);
    out.forEach((text, i) => assert.deepEqual(JSON.parse(text), { level: 30, i, s: 'x€'.repeat(i % 40), msg: 'line' }));
  });

  it('neither blocks nor loses lines when the pipe is full (partial writes, EAGAIN), and keeps their order', async () => {
    // 4 MB in one turn, then more in later turns, while nobody reads the pipe (64 KiB) for a while.
    const script = childScript(`
      const started = Date.now();
      for (let i = 0; i < 4000; i++) logger.info({ i, s: 'y'.repeat(1000) }, 'burst');
      let turns = 0;
      const more = () => { logger.info({ i: 4000 + turns }, 'later'); if (++turns < 50) setImmediate(more); else process.stderr.write('loop free after ' + (Date.now() - started) + ' ms\\n'); };
      setImmediate(more);`);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.stdout.pause();
    // Nobody reads stdout until the child says its event loop went on (it could not, were it blocked on the pipe).
    for (let waited = 0; !/loop free after \d+ ms/.test(stderr); waited += 50) {
      assert.ok(waited < 30_000, `the event loop was blocked by a full pipe (stderr: ${stderr})`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    const chunks: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
    child.stdout.resume();
    const code = await new Promise((resolve) => child.once('close', resolve));
    assert.equal(code, 0, stderr);
    const out = Buffer.concat(chunks).toString('utf8').split('\n');
    assert.equal(out.pop(), '');
    assert.equal(out.length, 4050);
    out.forEach((text, i) => assert.equal((JSON.parse(text) as { i: number }).i, i));
  });

  it('stops quietly when the reader goes away (EPIPE)', async () => {
    const script = childScript(`
      const { once } = await import('node:events');
      for (let round = 0; round < 20; round++) { for (let i = 0; i < 100; i++) logger.info({ round, i }, 'line'); await new Promise((r) => setTimeout(r, 20)); }
      process.stderr.write('done\\n');`);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    await new Promise((resolve) => child.stdout.once('data', resolve));
    child.stdout.destroy();
    const code = await new Promise((resolve) => child.once('close', resolve));
    assert.equal(code, 0, stderr);
    assert.equal(stderr, 'done\n');
  });
});
