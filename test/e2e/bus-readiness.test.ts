import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ChangeBusService } from '../../src/database/change-bus.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import pg from 'pg';
import { adminUrl, createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/upstreams.js';

interface Readiness {
  status: string;
  checks: Record<string, string>;
  reasons?: Record<string, string>;
}

describe('readiness follows the change bus', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { GATEHOUSE_BUS_LIVENESS_INTERVAL: '250', GATEHOUSE_BUS_LIVENESS_TIMEOUT: '1000' });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const readyz = async () => {
    const res = await fetch(`${app.url}/readyz`);
    return { status: res.status, body: (await res.json()) as Readiness };
  };

  it('answers 503 naming changeBus while the listening connection hangs, and 200 once it listens again', async () => {
    await eventually('ready', async () => {
      const r = await readyz();
      return r.status === 200 && r.body.checks.changeBus === 'ok' ? true : undefined;
    });
    const bus = app.app.get(ChangeBusService);
    const pid = await eventually('listening', () => bus.backendPid);
    const [row] = await db.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1 AND datname = current_database() AND application_name = 'gatehouse-bus'",
      [pid],
    );
    assert.equal(row.n, 1, 'only ever signal this app’s own listening backend');
    // While paused, new connections to this database are refused too, so the bus cannot
    // reconnect at once on a fresh backend and the 503 lasts until the test lets it (under load
    // the reconnect was faster than /readyz polling, and the 503 was never observed).
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS false`);
    process.kill(pid, 'SIGSTOP');
    try {
      const down = await eventually('503 from /readyz', async () => {
        const r = await readyz();
        return r.status === 503 ? r.body : undefined;
      }, 10_000);
      assert.equal(down.status, 'not_ready');
      assert.equal(down.checks.changeBus, 'error');
      assert.match(down.reasons?.changeBus ?? '', /liveness query|listening connection lost|reconnecting failed/);
    } finally {
      process.kill(pid, 'SIGCONT');
      await admin.query(`ALTER DATABASE ${db.name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    await eventually('ready again', async () => ((await readyz()).status === 200 ? true : undefined), 10_000);
    assert.notEqual(bus.backendPid, pid);
  });
});
