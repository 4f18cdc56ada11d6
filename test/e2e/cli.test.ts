import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { freePort, spawnGatehouse, stopAllGatehouses, TEST_ENCRYPTION_KEYS, waitForStatus } from '../support/process.js';

const BASE_ENV = { PATH: process.env.PATH ?? '', GATEHOUSE_ENV_FILE: '/nonexistent', GATEHOUSE_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS, LOG_LEVEL: 'info' };

/** Runs the real CLI (`node dist/cli.js`) with only `env`. */
function cli(env: Record<string, string>, ...args: string[]) {
  const run = spawnSync(process.execPath, ['dist/cli.js', ...args], { env: { ...BASE_ENV, ...env }, encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The same, asynchronously: for a CLI run while a server process of this test is alive. */
function cliAsync(env: Record<string, string>, ...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/cli.js', ...args], { env: { ...BASE_ENV, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

describe('the CLI', () => {
  let db: TestDatabase;
  let env: Record<string, string>;
  const migrationCount = async () => Number((await db.query<{ n: string }>('SELECT count(*)::text AS n FROM migrations'))[0].n);
  const hasSecretsTable = async () => (await db.query("SELECT 1 FROM information_schema.tables WHERE table_name = 'secrets'")).length === 1;

  before(async () => {
    db = await createTestDatabase();
    env = { DATABASE_URL: db.url };
    const up = cli(env, 'migrate');
    assert.equal(up.status, 0, up.stderr);
  });
  after(async () => {
    await stopAllGatehouses();
    await db.drop();
  });

  it('--help or -h anywhere prints that command’s help and does nothing else', async () => {
    const before = await migrationCount();
    assert.ok(before > 0 && (await hasSecretsTable()));
    for (const args of [
      ['migrate:revert', '--help'],
      ['migrate:revert', '--yes', '-h'],
      ['migrate:revert', '--bogus', '--help'],
      ['create-admin-key', '--name', 'x', '--help'],
      ['secrets', 'rotate', '-h'],
      ['migrate', '--help'],
    ]) {
      const run = cli(env, ...args);
      assert.equal(run.status, 0, `${args.join(' ')}: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`^Usage: gatehouse ${args[0] === 'secrets' ? 'secrets rotate' : args[0]}`), args.join(' '));
      assert.equal(run.stderr, '', args.join(' '));
    }
    assert.match(cli(env, 'migrate:revert', '--help').stdout, /--yes +really revert/);
    assert.equal(await migrationCount(), before, 'no migration was reverted');
    assert.ok(await hasSecretsTable(), 'the secrets table is still there');
    assert.equal((await db.query("SELECT 1 FROM api_keys WHERE name = 'x'")).length, 0, 'no key was created');
    const general = cli(env, '--help');
    assert.equal(general.status, 0);
    assert.match(general.stdout, /^Usage: gatehouse <command>/);
  });

  it('rejects unknown options with exit 2, naming the option and the accepted ones', () => {
    const revert = cli(env, 'migrate:revert', '--force');
    assert.equal(revert.status, 2);
    assert.equal(revert.stderr, 'migrate:revert: unknown option "--force"; accepted: --yes, --help\n');
    const key = cli(env, 'create-admin-key', '--name', 'k', '--role=member');
    assert.equal(key.status, 2);
    assert.match(key.stderr, /^create-admin-key: unknown option "--role"; accepted: --name NAME, --expires-at ISO-DATE, --help$/m);
    const extra = cli(env, 'migrate', 'now');
    assert.equal(extra.status, 2);
    assert.match(extra.stderr, /^migrate: unexpected argument "now"/);
    const missing = cli(env, 'create-admin-key', '--name');
    assert.equal(missing.status, 2);
    assert.match(missing.stderr, /--name expects a value/);
  });

  it('migrate:revert says what it would revert and asks for --yes; with --yes it reverts', async () => {
    const before = await migrationCount();
    const last = (await db.query<{ name: string }>('SELECT name FROM migrations ORDER BY id DESC LIMIT 1'))[0].name;
    const dry = cli(env, 'migrate:revert');
    assert.equal(dry.status, 2);
    assert.equal(dry.stdout, '');
    assert.match(dry.stderr, new RegExp(`would revert ${last} .*pass --yes`));
    assert.equal(await migrationCount(), before);
    const real = cli(env, 'migrate:revert', '--yes');
    assert.equal(real.status, 0, real.stderr);
    assert.equal(real.stdout, `reverted: ${last}\n`);
    assert.equal(await migrationCount(), before - 1);
    assert.equal(cli(env, 'migrate').status, 0);
  });

  it('create-admin-key works while a server runs on the embedded PostgreSQL, and prints only the key', async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root: the embedded PostgreSQL of this test runs as the postgres user, which only root can switch to');
      return;
    }
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-cli-embedded-'));
    chmodSync(root, 0o755); // as root, PostgreSQL runs as the postgres user, who must reach the data directory
    try {
      const embeddedEnv = { EMBEDDED_POSTGRES_DIR: join(root, 'postgres'), EMBEDDED_POSTGRES_PORT: String(await freePort()), MCP_AUTH_STRATEGY: 'api_key' };
      const server = await spawnGatehouse(embeddedEnv, 120_000);
      await waitForStatus(`${server.url}/readyz`, 200, 60_000);

      const run = await cliAsync({ ...embeddedEnv, NODE_ENV: 'production' }, 'create-admin-key', '--name', 'while-running');
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /^gatehouse_[A-Za-z0-9_-]{43}\n$/, 'stdout holds the key and nothing else');
      assert.match(run.stderr, /using the embedded PostgreSQL of the running Gatehouse/);
      const me = await fetch(`${server.url}/api/v1/me`, { headers: { 'x-api-key': run.stdout.trim() } });
      assert.equal(me.status, 200, 'the running server accepts the key');
      assert.deepEqual(((await me.json()) as { roles: string[] }).roles, ['admin']);
      assert.equal(await server.stop('SIGTERM'), 0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
