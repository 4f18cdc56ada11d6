import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PinoLogger } from 'nestjs-pino';
import pg from 'pg';
import { DataSource } from 'typeorm';
import { buildDataSourceOptions } from '../../src/database/data-source-options.js';
import { SchemaStateService } from '../../src/database/schema-state.service.js';
import { McpSessionEntity } from '../../src/sessions/mcp-session.entity.js';
import { SessionsService, TooManySessionsError, touchIntervalMs, type SessionInit } from '../../src/sessions/sessions.service.js';
import { configFrom } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { FakeBus } from '../support/fake-bus.js';
import { eventually } from '../support/upstreams.js';

const TIMEOUT = 1_000;

describe('sessions across replicas (expiry from the row, sliding expiry, cap under concurrency)', () => {
  let db: TestDatabase;
  let ds: DataSource;
  let schema: SchemaStateService;
  const clock = { t: 1_800_000_000_000, now: () => clock.t };
  const services: SessionsService[] = [];

  before(async () => {
    db = await createTestDatabase();
    ds = await new DataSource(buildDataSourceOptions(configFrom({ DATABASE_URL: db.url }).database, db.url)).initialize();
    schema = new SchemaStateService(ds);
    await schema.migrate();
  });
  after(async () => {
    for (const s of services) s.beforeApplicationShutdown();
    await ds.destroy();
    await db.drop();
  });

  /** One replica: its own cache and bus, the shared database and clock. */
  function replica(bus = new FakeBus()) {
    const config = configFrom({
      DATABASE_URL: db.url,
      HTTP_SESSION_TIMEOUT: String(TIMEOUT),
      HTTP_MAX_CONCURRENT_SESSIONS: '3',
      HTTP_SESSION_CLEANUP_INTERVAL: String(24 * 3_600_000),
    });
    const svc = new SessionsService(ds.getRepository(McpSessionEntity), config, ds, bus.asService(), schema, new PinoLogger({ pinoHttp: { level: 'silent' } }), clock);
    svc.onApplicationBootstrap();
    services.push(svc);
    return { svc, bus };
  }

  const init = (principal: string): SessionInit => ({ principal, endpoint: '', protocolVersion: '2025-06-18', clientInfo: {}, capabilities: {} });
  const row = async (id: string) =>
    (await db.query<{ closed: boolean; expires: Date }>('SELECT closed_at IS NOT NULL AS closed, expires_at AS expires FROM mcp_sessions WHERE id = $1', [id]))[0];

  it('writes activity at least four times per timeout, so a short HTTP_SESSION_TIMEOUT still slides', async () => {
    assert.equal(touchIntervalMs(1_000), 250);
    assert.equal(touchIntervalMs(30 * 60_000), 60_000);
    const { svc } = replica();
    const { token, session } = await svc.create(init('slide'));
    for (let i = 0; i < 8; i++) {
      clock.t += 300; // always used within its timeout; 2.4 s in all, over twice the timeout
      assert.ok(await svc.resolve(token, ''), `alive at +${(i + 1) * 300} ms`);
    }
    const r = await row(session.id);
    assert.equal(r.closed, false);
    assert.equal(r.expires.getTime(), clock.t + TIMEOUT);
  });

  it('never closes a session from a replica’s stale copy: the row decides', async () => {
    const a = replica();
    const b = replica();
    const { token, session } = await a.svc.create(init('stale')); // a caches expiry = t0 + 1000
    clock.t += 900;
    assert.ok(await b.svc.resolve(token, ''), 'used on b'); // b extends the row to t0 + 1900
    clock.t += 200; // t0 + 1100: past a's copy, within the row's expiry
    assert.ok(await a.svc.resolve(token, ''), 'a sees the extension instead of closing');
    assert.equal((await row(session.id)).closed, false);
    assert.deepEqual(a.bus.published, [], 'nothing closed');

    clock.t += TIMEOUT + 1; // idle for longer than the timeout: now it is over, on any replica
    assert.equal(await b.svc.resolve(token, ''), undefined);
    assert.equal((await row(session.id)).closed, true);
    assert.deepEqual(
      b.bus.published.map((p) => [p.topic, p.data, p.tx !== undefined]),
      [['sessions.closed', { id: session.id }, true]],
      'the close is published inside its transaction',
    );
    assert.equal(await a.svc.resolve(token, ''), undefined);
  });

  it('publishes closes inside the closing transaction', async () => {
    const { svc, bus } = replica();
    const { session } = await svc.create(init('tx'));
    const { session: other } = await svc.create(init('tx2'));
    const seen: [boolean, boolean][] = [];
    bus.onPublish = async ({ data, tx }) => {
      assert.ok(tx, 'with the transaction');
      const id = (data as { id: string }).id;
      const [inside] = (await tx.query('SELECT closed_at IS NOT NULL AS closed FROM mcp_sessions WHERE id = $1', [id])) as { closed: boolean }[];
      seen.push([inside.closed, (await row(id)).closed]);
    };
    await svc.close(session);
    assert.equal(await svc.closeForPrincipals(['tx2']), 1);
    assert.deepEqual(seen, [
      [true, false],
      [true, false],
    ], 'sent before the close commits: delivered iff it commits');
    assert.equal((await row(other.id)).closed, true);
  });

  it('holds the per-principal cap under concurrent initialize (count and insert under one lock)', async () => {
    const { svc } = replica();
    // Hold inserts into mcp_sessions (SHARE blocks row writes, not reads) until all five
    // creates are under way: each has either counted (and waits to insert) or waits its turn.
    const blocker = new pg.Client({ connectionString: db.url });
    await blocker.connect();
    let results: PromiseSettledResult<unknown>[];
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE mcp_sessions IN SHARE MODE');
      const creates = Array.from({ length: 5 }, () => svc.create(init('capped')));
      await eventually(
        'five creates waiting on a lock',
        async () => {
          const [{ n }] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
          return n === 5 ? true : undefined;
        },
        10_000,
      );
      await blocker.query('COMMIT');
      results = await Promise.allSettled(creates);
    } finally {
      await blocker.end();
    }
    const ok = results.filter((r) => r.status === 'fulfilled').length;
    const refused = results.filter((r) => r.status === 'rejected' && r.reason instanceof TooManySessionsError).length;
    assert.deepEqual({ ok, refused }, { ok: 3, refused: 2 });
    const [{ n }] = await db.query<{ n: number }>("SELECT count(*)::int AS n FROM mcp_sessions WHERE principal = 'capped' AND closed_at IS NULL");
    assert.equal(n, 3);
  });
});
