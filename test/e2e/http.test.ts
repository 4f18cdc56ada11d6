import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setImmediate as tick } from 'node:timers/promises';
import { Body, Controller, Module, Post } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { Authenticated } from '../../src/auth/auth.decorators.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { waitForStatus } from '../support/process.js';

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

/** Logs through the injected PinoLogger after reading a body and after an await: both must carry the request id. */
@Controller('test')
class LoggingProbeController {
  constructor(private readonly logger: PinoLogger) {}

  @Post('log')
  @Authenticated()
  async log(@Body() body: { n: number }): Promise<{ ok: true }> {
    this.logger.info({ n: body.n }, 'probe before await');
    await tick();
    this.logger.info({ n: body.n }, 'probe after await');
    return { ok: true };
  }
}

@Module({ controllers: [LoggingProbeController] })
class LoggingProbeModule {}

describe('HTTP surface', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { HTTP_MAX_REQUEST_SIZE: '2kb' }, { imports: [LoggingProbeModule] });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const assertErrorShape = (body: unknown, code: string, requestId: string) => {
    const b = body as ErrorBody;
    assert.deepEqual(Object.keys(b), ['error']);
    assert.equal(b.error.code, code);
    assert.equal(typeof b.error.message, 'string');
    assert.ok(b.error.message.length > 0);
    assert.equal(b.error.requestId, requestId);
    assert.doesNotMatch(JSON.stringify(b), /stack|at .*\.js:\d+|node_modules/);
  };

  it('GET /healthz answers without the database', async () => {
    const res = await fetch(`${app.url}/healthz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ok' });
  });

  it('GET /readyz is 200 once migrated and the database answers', async () => {
    await waitForStatus(`${app.url}/readyz`, 200); // the server registry loads just after migrating
    const res = await fetch(`${app.url}/readyz`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { status: 'ready', checks: { database: 'ok', migrations: 'ok', servers: 'ok', upstreams: 'ok', changeBus: 'ok', policies: 'ok', lifecycle: 'running' } });
  });

  it('echoes a caller’s X-Request-Id and generates one otherwise', async () => {
    const given = await fetch(`${app.url}/healthz`, { headers: { 'x-request-id': 'trace-123.abc' } });
    assert.equal(given.headers.get('x-request-id'), 'trace-123.abc');
    const generated = await fetch(`${app.url}/healthz`);
    assert.match(generated.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/);
    const hostile = await fetch(`${app.url}/healthz`, { headers: { 'x-request-id': 'a b"}{\'' } });
    assert.match(hostile.headers.get('x-request-id') ?? '', /^[0-9a-f-]{36}$/, 'unsafe ids are replaced');
  });

  it('unknown routes are 404 in the JSON error shape', async () => {
    const res = await fetch(`${app.url}/no/such/route`, { headers: { 'x-request-id': 'rid-404' } });
    assert.equal(res.status, 404);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await res.json()) as ErrorBody;
    assertErrorShape(body, 'not_found', 'rid-404');
    assert.equal(body.error.message, 'No route for GET /no/such/route');
  });

  it('a body over HTTP_MAX_REQUEST_SIZE is 413', async () => {
    const res = await fetch(`${app.url}/healthz`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'rid-413' },
      body: JSON.stringify({ pad: 'x'.repeat(4096) }),
    });
    assert.equal(res.status, 413);
    assertErrorShape(await res.json(), 'payload_too_large', 'rid-413');
  });

  it('malformed JSON is 400 invalid_json', async () => {
    const res = await fetch(`${app.url}/healthz`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'rid-400' },
      body: '{"not": json',
    });
    assert.equal(res.status, 400);
    assertErrorShape(await res.json(), 'invalid_json', 'rid-400');
  });

  it('logs one JSON line per request carrying its request id, with credentials redacted', async () => {
    const secret = 'sk-live-should-never-be-logged-4d1f';
    await fetch(`${app.url}/no/such/route?token=${secret}`, {
      headers: { 'x-request-id': 'rid-log', authorization: `Bearer ${secret}`, 'x-api-key': secret, cookie: `sid=${secret}` },
    });
    await new Promise((r) => setTimeout(r, 50));
    const line = app.logs.lines.find((l) => l.requestId === 'rid-log' && l.msg === 'request completed');
    assert.ok(line, 'a request log line with the request id');
    assert.equal((line.res as { statusCode: number }).statusCode, 404);
    assert.ok(!app.logs.raw.includes(secret), 'the secret appears nowhere in the log output');
  });

  it('binds the request id to every line logged while serving a request, and the principal id to its access line', async () => {
    const answers = await Promise.all(
      [1, 2, 3].map((n) =>
        fetch(`${app.url}/test/log`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-request-id': `rid-scope-${n}` }, body: JSON.stringify({ n }) }),
      ),
    );
    assert.deepEqual(answers.map((r) => r.status), [201, 201, 201]);
    await new Promise((r) => setTimeout(r, 50));
    for (const n of [1, 2, 3]) {
      const lines = app.logs.lines.filter((l) => l.requestId === `rid-scope-${n}`);
      assert.deepEqual(lines.map((l) => [l.msg, l.n]), [['probe before await', n], ['probe after await', n], ['request completed', undefined]]);
      const access = lines[2];
      assert.equal(access.principalId, 'none:anonymous');
      assert.equal(typeof access.responseTime, 'number');
      assert.deepEqual(access.res, { statusCode: 201 });
      assert.equal((access.req as { method: string; url: string }).method, 'POST');
      assert.equal((access.req as { method: string; url: string }).url, '/test/log');
    }
  });

  it('keeps health probes out of the request log', async () => {
    await fetch(`${app.url}/healthz`, { headers: { 'x-request-id': 'rid-probe' } });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(app.logs.lines.filter((l) => l.requestId === 'rid-probe').length, 0);
  });
});
