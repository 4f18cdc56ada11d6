import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { buildDataSourceOptions } from '../../src/database/data-source-options.js';
import { pendingMigrations, revertLastMigration, runMigrations } from '../../src/database/migrations.js';
import { configFrom } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const tables = async (db: TestDatabase) =>
  (await db.query<{ table_name: string }>("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")).map(
    (r) => r.table_name,
  );

function dataSource(url: string): DataSource {
  return new DataSource(buildDataSourceOptions(configFrom({ DATABASE_URL: url }).database, url));
}

describe('migrations', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('go up and down on an empty database, and up again', async () => {
    const ds = await dataSource(db.url).initialize();
    try {
      assert.deepEqual(await tables(db), []);
      const all = await pendingMigrations(ds);
      assert.ok(all.length >= 1, 'at least one migration exists');

      const { applied } = await runMigrations(ds);
      assert.deepEqual(applied, all);
      assert.ok((await tables(db)).includes('users'));
      assert.deepEqual(await pendingMigrations(ds), []);
      assert.deepEqual((await runMigrations(ds)).applied, [], 'a second run applies nothing');

      for (let i = all.length - 1; i >= 0; i--) assert.equal(await revertLastMigration(ds), all[i]);
      assert.equal(await revertLastMigration(ds), undefined);
      assert.deepEqual(await tables(db), ['migrations'], 'only the bookkeeping table is left');

      assert.deepEqual((await runMigrations(ds)).applied, all);
    } finally {
      await ds.destroy();
    }
  });

  it('run once when several replicas start at the same time (advisory lock)', async () => {
    const fresh = await createTestDatabase();
    const sources = await Promise.all([1, 2, 3].map(() => dataSource(fresh.url).initialize()));
    try {
      const reports = await Promise.all(sources.map((ds) => runMigrations(ds)));
      const appliedCounts = reports.map((r) => r.applied.length).sort();
      const total = (await pendingMigrations(sources[0])).length;
      assert.equal(total, 0);
      assert.equal(appliedCounts.filter((n) => n > 0).length, 1, 'exactly one replica applied migrations');
      const rows = await fresh.query<{ n: string }>('SELECT count(*)::text AS n FROM migrations');
      assert.equal(Number(rows[0].n), reports.find((r) => r.applied.length > 0)!.applied.length);
    } finally {
      await Promise.all(sources.map((ds) => ds.destroy()));
      await fresh.drop();
    }
  });

  it('are applied, shown and reverted by the CLI with the same options', async () => {
    const fresh = await createTestDatabase();
    const cli = (...args: string[]) =>
      spawnSync(process.execPath, ['dist/cli.js', ...args], {
        env: { PATH: process.env.PATH, DATABASE_URL: fresh.url, LOG_LEVEL: 'warn', GATEHOUSE_ENV_FILE: '/nonexistent' },
        encoding: 'utf8',
        timeout: 30_000,
      });
    try {
      const show = cli('migrate:show');
      assert.equal(show.status, 1, 'pending migrations make migrate:show exit 1');
      assert.match(show.stdout, /^pending: CreateUsers\d+/);
      const up = cli('migrate');
      assert.equal(up.status, 0, up.stderr);
      assert.match(up.stdout, /^applied: CreateUsers\d+/);
      assert.equal(cli('migrate:show').status, 0);
      // The entities and the migrations describe the same schema: nothing to generate.
      const out = mkdtempSync(join(tmpdir(), 'gatehouse-generate-'));
      const generate = cli('migrate:generate', 'Nothing', '--out', out);
      assert.equal(generate.status, 0, generate.stderr);
      assert.match(generate.stdout, /no changes: the entities match the database/, readdirSync(out).map((f) => readFileSync(join(out, f), 'utf8')).join('\n'));
      const down = cli('migrate:revert', '--yes');
      assert.equal(down.status, 0, down.stderr);
      assert.match(down.stdout, /^reverted: /);
      const bad = cli('migrate:frobnicate');
      assert.equal(bad.status, 2);
      assert.match(bad.stderr, /unknown command "migrate:frobnicate"/);
    } finally {
      await fresh.drop();
    }
  });
});
