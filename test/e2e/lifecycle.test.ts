import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Module, Query } from '@nestjs/common';
import { Public } from '../../src/common/decorators/public.decorator.js';
import { startTestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/upstreams.js';

/** A route that takes as long as asked: an in-flight request to drain. */
@Controller('test')
@Public()
class SlowController {
  @Get('slow')
  async slow(@Query('ms') ms: string): Promise<{ done: true }> {
    await new Promise((r) => setTimeout(r, Number(ms)));
    return { done: true };
  }
}

@Module({ controllers: [SlowController] })
class SlowModule {}

const readyz = async (url: string) => {
  const res = await fetch(`${url}/readyz`);
  return { status: res.status, body: (await res.json()) as { status: string; checks: Record<string, string>; reasons?: Record<string, string> } };
};

/** A GET on its own connection (no keep-alive pool), so closing the server can't reuse it. */
function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('lifecycle', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('readiness: 503 while migrations are pending (DB_MIGRATE=false), 200 once a job applies them', async () => {
    const app = await startTestApp(db.url, { DB_MIGRATE: 'false' });
    try {
      const before = await readyz(app.url);
      assert.equal(before.status, 503);
      assert.equal(before.body.status, 'not_ready');
      assert.deepEqual(before.body.checks, { database: 'ok', migrations: 'pending', servers: 'pending', upstreams: 'pending', changeBus: 'ok', policies: 'pending', lifecycle: 'running' });
      assert.deepEqual(before.body.reasons, { servers: 'the upstream server registry has not loaded yet', policies: 'not loaded yet (loads once the schema is current)' });
      assert.equal((await fetch(`${app.url}/healthz`)).status, 200, 'liveness holds meanwhile');
      const early = await fetch(`${app.url}/api/v1/servers`);
      assert.equal(early.status, 503, 'the API says it is starting instead of failing on a missing table');
      assert.equal(((await early.json()) as { error: { code: string } }).error.code, 'service_unavailable');

      const job = spawnSync(process.execPath, ['dist/cli.js', 'migrate'], {
        env: { PATH: process.env.PATH, DATABASE_URL: db.url, GATEHOUSE_ENV_FILE: '/nonexistent' },
        encoding: 'utf8',
        timeout: 30_000,
      });
      assert.equal(job.status, 0, job.stderr);
      // Ready once the schema is current and, right after, the policies have loaded.
      const afterJob = await eventually('ready after the job', async () => {
        const r = await readyz(app.url);
        return r.status === 200 ? r : undefined;
      }, 10_000);
      assert.equal(afterJob.body.status, 'ready');
      assert.equal((await fetch(`${app.url}/api/v1/servers`)).status, 200);
    } finally {
      await app.shutdown('test');
    }
  });

  it('shutdown: readiness 503, in-flight request finishes, new connections refused, resolves 0', async () => {
    const app = await startTestApp(db.url, { SHUTDOWN_DELAY: '400', SHUTDOWN_TIMEOUT: '10000' }, { imports: [SlowModule] });
    const inFlight = get(`${app.url}/test/slow?ms=1200`);
    await new Promise((r) => setTimeout(r, 100));
    const stopped = app.shutdown('SIGTERM');

    const during = await readyz(app.url);
    assert.equal(during.status, 503, 'readiness fails as soon as shutdown begins');
    assert.equal(during.body.checks.lifecycle, 'shutting_down');

    const slow = await inFlight;
    assert.equal(slow.status, 200, 'the in-flight request completed');
    assert.deepEqual(JSON.parse(slow.body), { done: true });
    assert.equal(await stopped, 0, 'drained cleanly');
    await assert.rejects(get(`${app.url}/healthz`), /ECONNREFUSED/);
    assert.ok(app.logs.lines.some((l) => l.msg === 'Gatehouse stopped' && l.drained === true));
  });

  it('shutdown is bounded by SHUTDOWN_TIMEOUT: a request that outlives it is cut, exit code 1', async () => {
    const app = await startTestApp(db.url, { SHUTDOWN_TIMEOUT: '300' }, { imports: [SlowModule] });
    const inFlight = get(`${app.url}/test/slow?ms=5000`).catch((error: Error) => error);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    assert.equal(await app.shutdown('SIGTERM'), 1);
    assert.ok(Date.now() - started < 4_000, 'did not wait for the slow request');
    assert.ok((await inFlight) instanceof Error, 'the cut request saw its connection closed');
  });
});
