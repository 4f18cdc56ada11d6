import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { findRunningEmbeddedPostgres, type ProcessTable } from './embedded-attach.js';

const root = mkdtempSync(join(tmpdir(), 'gatehouse-attach-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** A data directory with `postmaster.pid` lines as PostgreSQL writes them, and the password file beside it. */
function dataDir(name: string, pidLines: string[] | undefined, password?: string): string {
  const dir = join(root, name);
  mkdirSync(dir);
  if (pidLines) writeFileSync(join(dir, 'postmaster.pid'), `${pidLines.join('\n')}\n`);
  if (password !== undefined) writeFileSync(`${dir}.password`, `${password}\n`);
  return dir;
}
const pidFile = (pid: number, port: string) => [String(pid), '/data', '1700000000', port, '', '127.0.0.1', '  1234  5678', 'ready   '];
const table = (parents: Record<number, number>, commands: Record<number, string>): ProcessTable => ({
  parentOf: (pid) => Promise.resolve(parents[pid]),
  commandOf: (pid) => Promise.resolve(commands[pid] ?? ''),
});
const serverRuns = table({ 4242: 777 }, { 777: 'node' });

describe('findRunningEmbeddedPostgres', () => {
  it('attaches to a postmaster a live node process started: port from postmaster.pid, password from <dir>.password', async () => {
    const dir = dataDir('live', pidFile(4242, '54329'), 'p@ss/word');
    assert.deepEqual(await findRunningEmbeddedPostgres(dir, 'gatehouse', serverRuns), {
      url: 'postgres://postgres:p%40ss%2Fword@127.0.0.1:54329/gatehouse',
      dataDir: dir,
      pid: 4242,
      port: 54329,
      ownerPid: 777,
    });
  });

  it('finds nothing with no pid file, a stale one, or an orphan (the launcher handles those)', async () => {
    assert.equal(await findRunningEmbeddedPostgres(dataDir('none', undefined, 'x'), 'gatehouse', serverRuns), undefined);
    assert.equal(await findRunningEmbeddedPostgres(dataDir('stale', pidFile(5555, '54329'), 'x'), 'gatehouse', serverRuns), undefined);
    const orphan = table({ 4242: 1 }, { 1: 'systemd' });
    assert.equal(await findRunningEmbeddedPostgres(dataDir('orphan', pidFile(4242, '54329'), 'x'), 'gatehouse', orphan), undefined);
    const ours = table({ 4242: process.pid }, { [process.pid]: 'node' });
    assert.equal(await findRunningEmbeddedPostgres(dataDir('ours', pidFile(4242, '54329'), 'x'), 'gatehouse', ours), undefined);
  });

  it('says clearly why it cannot attach: no port yet, no password file', async () => {
    await assert.rejects(findRunningEmbeddedPostgres(dataDir('starting', pidFile(4242, ''), 'x'), 'gatehouse', serverRuns), /is still starting: .*names no port yet/);
    await assert.rejects(
      findRunningEmbeddedPostgres(dataDir('nopass', pidFile(4242, '54329')), 'gatehouse', serverRuns),
      /is running \(pid 4242, port 54329\) but its password file .*nopass\.password cannot be read \(ENOENT\)/,
    );
  });
});
