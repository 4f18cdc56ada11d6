import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { prepareDevKeyDir } from './key-ring.provider.js';

const mode = (path: string) => statSync(path).mode & 0o777;

describe('prepareDevKeyDir', () => {
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-keydir-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('creates <dataDir> 0755 with a private keys folder (0700)', () => {
    const dataDir = join(root, 'fresh', '.data');
    const { dir, moved } = prepareDevKeyDir(dataDir);
    assert.equal(dir, join(dataDir, 'keys'));
    assert.equal(moved, false);
    assert.equal(mode(dataDir), 0o755);
    assert.equal(mode(dir), 0o700);
  });

  it('moves a key an earlier version left in a 0700 <dataDir> into the keys folder and opens <dataDir> to 0755', () => {
    const dataDir = join(root, 'legacy', '.data');
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeFileSync(join(dataDir, 'encryption-keys'), 'dev-1:key\n', { mode: 0o600 });
    const { dir, moved } = prepareDevKeyDir(dataDir);
    assert.equal(moved, true);
    assert.equal(readFileSync(join(dir, 'encryption-keys'), 'utf8'), 'dev-1:key\n');
    assert.equal(existsSync(join(dataDir, 'encryption-keys')), false);
    assert.equal(mode(dataDir), 0o755);
    assert.equal(mode(join(dir, 'encryption-keys')), 0o600);
    assert.equal(prepareDevKeyDir(dataDir).moved, false, 'idempotent');
  });
});
