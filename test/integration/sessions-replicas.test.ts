import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PinoLogger } from 'nestjs-pino';
import pg from 'pg';
import { DataSource, type EntityManager } from 'typeorm';
import { buildDataSourceOptions } from '../../src/database/data-source-options.js';
import { SchemaStateService } from '../../src/database/schema-state.service.js';
import { McpSessionEntity } from '../../src/sessions/mcp-session.entity.js';
import { SessionsService, TOKEN_MEMO_IDLE_MS, TooManySessionsError, touchIntervalMs, type SessionInit } from '../../src/sessions/sessions.service.js';
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

  /** One replica: its own cache and bus, the shared database and clock (and data source, when given). */
  function replica(bus = new FakeBus(), env: Record<string, string> = {}, dataSource: DataSource = ds) {
    const config = configFrom({
      DATABASE_URL: db.url,
      HTTP_SESSION_TIMEOUT: String(TIMEOUT),
      HTTP_MAX_CONCURRENT_SESSIONS: '3',
      HTTP_SESSION_CLEANUP_INTERVAL: String(24 * 3_600_000),
      ...env,
    });
    const svc = new SessionsService(ds.getRepository(McpSessionEntity), config, dataSource, bus.asService(), schema, new PinoLogger({ pinoHttp: { level: 'silent' } }), clock);
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

  it('answers without I/O (cached) only what resolve would return unchanged; the id is the token’s SHA-256', async () => {
    const { svc } = replica();
    const { token, session } = await svc.create(init('cached'));
    // Rows written by earlier builds (createHash) name the same sessions.
    assert.equal(session.id, createHash('sha256').update(token).digest('hex'));
    assert.equal(svc.cached(token, ''), session, 'cached, open, fresh');
    assert.equal(svc.cached(token, 'other'), undefined, 'another endpoint');
    assert.equal(svc.cached(`${token}x`, ''), undefined, 'unknown token');
    assert.equal(svc.cached('', ''), undefined, 'empty token');
    clock.t += touchIntervalMs(TIMEOUT); // a touch is due: only resolve writes it
    assert.equal(svc.cached(token, ''), undefined, 'touch due');
    const expiresBefore = (await row(session.id)).expires.getTime();
    assert.equal((await svc.resolve(token, ''))?.id, session.id);
    assert.ok((await row(session.id)).expires.getTime() > expiresBefore, 'resolve touched the row');
    assert.equal(svc.cached(token, '')?.id, session.id, 'fresh again after the touch');
    clock.t += TIMEOUT; // this copy has expired: the row decides, through resolve
    assert.equal(svc.cached(token, ''), undefined, 'expired copy');
    clock.t -= TIMEOUT;
    await svc.close(session);
    assert.equal(svc.cached(token, ''), undefined, 'closed');
    assert.equal(await svc.resolve(token, ''), undefined);
  });

  it('remembers the id of a used token (a hash, never a verdict): closed, ended elsewhere or expired sessions are refused at once, and their tokens dropped', async () => {
    const memo = (svc: SessionsService) => (svc as unknown as { tokenIds: { has(token: string): boolean } }).tokenIds;
    const a = replica();
    const b = replica();
    const { token, session } = await a.svc.create(init('memo'));
    assert.ok(memo(a.svc).has(token), 'remembered when opened');
    assert.equal(a.svc.cached(token, '')?.id, session.id);

    // A guessed or unknown token never enters it.
    assert.equal(await b.svc.resolve(`${token}x`, ''), undefined);
    assert.equal(b.svc.cached(`${token}y`, ''), undefined);
    assert.equal(memo(b.svc).has(`${token}x`) || memo(b.svc).has(`${token}y`), false);

    // b learns the token by using it; closed on a, b refuses it as soon as the close reaches it.
    assert.equal((await b.svc.resolve(token, ''))?.id, session.id);
    assert.ok(memo(b.svc).has(token));
    assert.equal(b.svc.cached(token, '')?.id, session.id, 'b answers from memory');
    await a.svc.close(session);
    assert.equal(a.svc.cached(token, ''), undefined, 'closed here: refused at once');
    assert.equal(await a.svc.resolve(token, ''), undefined);
    assert.equal(memo(a.svc).has(token), false, 'the token left the memo with its session');
    b.bus.emit('sessions.closed', { id: session.id });
    assert.equal(b.svc.cached(token, ''), undefined, 'closed elsewhere: refused once the bus says so');
    assert.equal(await b.svc.resolve(token, ''), undefined);
    assert.equal(memo(b.svc).has(token), false);

    // Expired: refused at once, though the token is remembered.
    const { token: t2, session: s2 } = await a.svc.create(init('memo'));
    assert.equal(a.svc.cached(t2, '')?.id, s2.id);
    clock.t += TIMEOUT + 1;
    assert.equal(a.svc.cached(t2, ''), undefined, 'expired copy');
    assert.equal(await a.svc.resolve(t2, ''), undefined, 'expired row');
    assert.equal(memo(a.svc).has(t2), false);

    // An unused token leaves at the sweep after TOKEN_MEMO_IDLE_MS; one in use stays.
    const { token: idle } = await a.svc.create(init('memo'));
    const { token: busy } = await a.svc.create(init('memo'));
    for (let i = 0; i < 3; i++) {
      clock.t += TOKEN_MEMO_IDLE_MS / 2;
      a.svc.cached(busy, '');
      a.svc.purgeIdleTokens();
    }
    assert.equal(memo(a.svc).has(idle), false, 'unused for longer than TOKEN_MEMO_IDLE_MS: dropped');
    assert.equal(memo(a.svc).has(busy), true, 'used within TOKEN_MEMO_IDLE_MS: kept');

    // The memo is cleared at shutdown.
    const { token: t3 } = await b.svc.create(init('memo'));
    b.svc.beforeApplicationShutdown();
    assert.equal(memo(b.svc).has(t3), false);
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

  it('opens a session without reading the other open sessions of its principal (an idle session costs nothing per initialize)', async () => {
    // Every row a query inside create() returns, through a data source whose transactions record them.
    const returned: number[] = [];
    const rowsOf = (r: unknown) => (Array.isArray(r) ? (Array.isArray(r[0]) ? r[0].length : r.length) : 0);
    const recording = new Proxy(ds, {
      get: (target, key) =>
        key === 'transaction'
          ? <T>(run: (em: EntityManager) => Promise<T>) =>
              target.transaction((em) =>
                run(
                  new Proxy(em, {
                    get: (e, k) =>
                      k === 'query'
                        ? async (...args: Parameters<EntityManager['query']>) => {
                            const result: unknown = await e.query(...args);
                            returned.push(rowsOf(result));
                            return result;
                          }
                        : (Reflect.get(e, k) as unknown),
                  }),
                ),
              )
          : (Reflect.get(target, key) as unknown),
    });
    const long = { HTTP_SESSION_TIMEOUT: String(3_600_000) };
    const { svc } = replica(new FakeBus(), { ...long, HTTP_MAX_CONCURRENT_SESSIONS: '1000' }, recording);
    for (let i = 0; i < 200; i++) await svc.create(init('many'));
    returned.length = 0;
    await svc.create(init('many'));
    assert.ok(returned.length > 0, 'create() ran its queries through the data source');
    assert.ok(Math.max(...returned) <= 1, `rows returned per query while 200 sessions were open: ${returned.join(', ')}`);

    // At the cap, reclaiming reads only the sessions it closes.
    const { svc: capped } = replica(new FakeBus(), { ...long, HTTP_MAX_CONCURRENT_SESSIONS: '201', HTTP_SESSION_RECLAIM_IDLE: '1000' }, recording);
    clock.t += 120_000; // all 201 idle for longer than the reclaim time plus one touch interval, none expired
    const oldest = (await db.query<{ id: string }>("SELECT id FROM mcp_sessions WHERE principal = 'many' AND closed_at IS NULL ORDER BY last_seen_at, id LIMIT 1"))[0].id;
    returned.length = 0;
    await capped.create(init('many'));
    assert.ok(Math.max(...returned) <= 1, `rows returned per query when reclaiming: ${returned.join(', ')}`);
    assert.equal((await row(oldest)).closed, true, 'the least recently used idle session was reclaimed');
  });
});
