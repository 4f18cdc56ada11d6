import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startGatehouse } from '../../src/bootstrap.js';
import { configFrom, startTestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { TEST_ENCRYPTION_KEYS, freePort, spawnGatehouse, stopAllGatehouses } from '../support/process.js';

/** Runs `node dist/main.js` until it exits or logs that it listens (then it is killed): exit code and output. */
async function runMain(env: Record<string, string>): Promise<{ code: number | null; listened: boolean; stdout: string; stderr: string }> {
  const port = await freePort();
  const child = spawn(process.execPath, [resolve('dist/main.js')], {
    env: { PATH: process.env.PATH, NODE_ENV: 'production', GATEHOUSE_ENV_FILE: '/nonexistent', GATEHOUSE_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let listened = false;
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
    if (!listened && stdout.includes('Gatehouse listening')) {
      listened = true;
      child.kill('SIGKILL');
    }
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const code = await new Promise<number | null>((done) => child.on('close', (c) => done(c)));
  return { code, listened, stdout, stderr };
}

describe('MCP_AUTH_STRATEGY=none: loopback only, unless explicitly allowed on the network', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await stopAllGatehouses();
    await db.drop();
  });

  it('refuses to start on a non-loopback HOST: exit 78, saying why, before touching the database', async () => {
    for (const host of ['0.0.0.0', '::']) {
      const run = await runMain({ HOST: host, DATABASE_URL: db.url });
      assert.equal(run.listened, false, `HOST=${host} must not listen:\n${run.stdout}`);
      assert.equal(run.code, 78, `HOST=${host}: ${run.stderr}`);
      assert.match(run.stderr, /^Invalid configuration \(1 problem\):\n {2}MCP_AUTH_STRATEGY: is "none"/);
      assert.match(run.stderr, new RegExp(`HOST=${host.replace(/[.:]/g, '\\$&')} listens beyond this machine`));
      assert.match(run.stderr, /anyone on the network could register a server and run any command here/);
      assert.match(run.stderr, /MCP_AUTH_ALLOW_NONE_ON_NETWORK=true/);
    }
    const migrated = await db.query<{ n: string }>("SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public'");
    assert.equal(migrated[0].n, '0', 'it stopped before migrating');
  });

  it('starts on the network when MCP_AUTH_ALLOW_NONE_ON_NETWORK=true, with one warning line', async () => {
    const gh = await spawnGatehouse({ HOST: '0.0.0.0', DATABASE_URL: db.url, MCP_AUTH_ALLOW_NONE_ON_NETWORK: 'true' });
    try {
      const warnings = gh.logs().filter((l) => l.code === 'open_access');
      assert.equal(warnings.length, 1, gh.stdout());
      assert.equal(warnings[0].level, 'warn');
      assert.match(String(warnings[0].msg), /HOST=0\.0\.0\.0 with MCP_AUTH_ALLOW_NONE_ON_NETWORK=true: anyone who can reach this address is an admin/);
      assert.equal((await fetch(`${gh.url}/healthz`)).status, 200);
    } finally {
      assert.equal(await gh.stop(), 0);
    }
  });

  it('on loopback it starts and logs exactly one warning; with authentication, none', async () => {
    const open = await startTestApp(db.url);
    try {
      const warnings = open.logs.lines.filter((l) => l.code === 'open_access');
      assert.equal(warnings.length, 1);
      assert.equal(warnings[0].level, 'warn');
      assert.match(String(warnings[0].msg), /^MCP_AUTH_STRATEGY=none: no authentication, every request is an admin that can run processes on this machine; fine on loopback \(HOST=127\.0\.0\.1\)/);
    } finally {
      await open.shutdown('test done');
    }
    const closed = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: 'open-access-test-key-0123456789' });
    try {
      assert.equal(closed.logs.lines.filter((l) => l.code === 'open_access').length, 0);
    } finally {
      await closed.shutdown('test done');
    }
  });

  it('startGatehouse itself refuses the same configuration (embedders get an error, not an open admin)', async () => {
    const config = configFrom({ DATABASE_URL: db.url, HOST: '0.0.0.0' });
    const outcome = await startGatehouse(config).then(
      async (started) => {
        await started.shutdown('must not have started');
        return undefined;
      },
      (error: unknown) => error as Error,
    );
    assert.ok(outcome, 'startGatehouse refused');
    assert.match(outcome.message, /MCP_AUTH_STRATEGY: is "none"/);
  });
});
