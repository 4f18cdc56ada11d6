import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, type FindManyOptions, type Repository } from 'typeorm';
import { buildDataSourceOptions } from '../../src/database/data-source-options.js';
import { ReadinessGates } from '../../src/database/readiness-gates.js';
import { SchemaStateService } from '../../src/database/schema-state.service.js';
import { POLICIES_CHANGED, PoliciesService } from '../../src/policies/policies.service.js';
import type { PolicyPrincipal } from '../../src/policies/policy-evaluator.js';
import { PolicyEntity } from '../../src/policies/policy.entity.js';
import { buildCatalog } from '../../src/upstreams/catalog.js';
import { configFrom } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { FakeBus } from '../support/fake-bus.js';
import { ManualTimers } from '../support/manual-timers.js';
import { tick, until } from '../support/until.js';

const dev: PolicyPrincipal = { userId: 'u1', apiKeyId: null, roles: ['dev'], groups: [] };

describe('policy loading (fail closed, serialized reloads, transactional publish)', () => {
  let db: TestDatabase;
  let ds: DataSource;
  let schema: SchemaStateService;
  const services: PoliciesService[] = [];

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

  function service(options: { repo?: Repository<PolicyEntity>; timers?: ManualTimers; bus?: FakeBus } = {}) {
    const gates = new ReadinessGates();
    const svc = new PoliciesService(
      options.repo ?? ds.getRepository(PolicyEntity),
      configFrom({ DATABASE_URL: db.url, GATEHOUSE_POLICY_DEFAULT: 'allow' }),
      (options.bus ?? new FakeBus()).asService(),
      schema,
      new PinoLogger({ pinoHttp: { level: 'silent' } }),
      gates,
      options.timers,
    );
    services.push(svc);
    return { svc, gate: gates.register('policies') };
  }

  it('denies everything until the first load succeeds, retrying with backoff; readiness says why', async () => {
    const timers = new ManualTimers();
    await db.query('ALTER TABLE policies RENAME TO policies_away');
    let renamed = true;
    try {
      const { svc, gate } = service({ timers });
      assert.equal(gate.state, 'pending');
      svc.onApplicationBootstrap();
      // GATEHOUSE_POLICY_DEFAULT is allow and no policy exists, yet nothing is allowed before a load.
      assert.equal(svc.loaded, false);
      assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, false);
      await until(() => gate.state === 'error', 5_000, 'the first load fails');
      assert.match(gate.reason ?? '', /^policies not loaded yet: .*"policies" does not exist; retrying$/);
      assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, false, 'a failed load does not open the gate');

      const first = timers.pending();
      assert.equal(first.length, 1);
      assert.ok(first[0] >= 250 && first[0] <= 500, `first retry after 0.25-0.5 s, got ${first[0]}`);
      timers.advance(first[0]);
      await until(() => timers.pending().length === 1, 5_000, 'the retry fails and schedules the next');
      const second = timers.pending()[0];
      assert.ok(second >= 500 && second <= 1_000, `second retry after 0.5-1 s, got ${second}`);
      assert.equal(svc.loaded, false);

      await db.query('ALTER TABLE policies_away RENAME TO policies');
      renamed = false;
      timers.advance(second);
      await until(() => svc.loaded, 5_000, 'loaded');
      assert.equal(gate.state, 'ok');
      assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, true, 'now the default applies');
      assert.deepEqual(timers.pending(), [], 'no more retries');
    } finally {
      if (renamed) await db.query('ALTER TABLE policies_away RENAME TO policies');
    }
  });

  it('serializes reloads: a reload that started before a change never overwrites the one the change caused', async () => {
    const real = ds.getRepository(PolicyEntity);
    const reads: Promise<PolicyEntity[]>[] = [];
    let active = 0;
    let maxActive = 0;
    let holdNext = false;
    let firstReadDone!: () => void;
    const firstRead = new Promise<void>((r) => (firstReadDone = r));
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    // The real repository, with one read held after it has read (as a slow query would be).
    const repo = Object.create(real) as Repository<PolicyEntity>;
    repo.find = (options?: FindManyOptions<PolicyEntity>) => {
      active++;
      maxActive = Math.max(maxActive, active);
      const read = (async () => {
        try {
          const rows = await real.find(options);
          if (holdNext) {
            holdNext = false;
            firstReadDone();
            await released;
          }
          return rows;
        } finally {
          active--;
        }
      })();
      reads.push(read);
      return read;
    };
    const bus = new FakeBus();
    const { svc } = service({ repo, bus });
    svc.onApplicationBootstrap();
    await svc.whenLoaded();
    assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, true);
    const before = reads.length;

    holdNext = true;
    bus.emit(POLICIES_CHANGED); // reload 1: reads the old (empty) set, then stalls
    await firstRead;
    await db.query("INSERT INTO policies (subject_type, subject_value, effect, operations, targets, description) VALUES ('role', 'dev', 'deny', '{*}', '{*}', 'no dev')");
    bus.emit(POLICIES_CHANGED); // reload 2, caused by the change
    await tick();
    // Had reload 2 started its own read meanwhile, let it finish first — the harmful order.
    if (reads.length > before + 1) await reads[before + 1];
    await tick();
    release();

    await until(() => !svc.decide(dev, 'tools/call', 'github__search').allowed, 3_000, 'the deny applies');
    await Promise.all(reads);
    await tick();
    const decision = svc.decide(dev, 'tools/call', 'github__search');
    assert.equal(decision.allowed, false, 'the deny stays');
    assert.equal(decision.by !== 'default' && decision.by.description, 'no dev');
    assert.equal(maxActive, 1, 'one read at a time');
    await db.query('DELETE FROM policies');
  });

  it('writes publish policies.changed inside their transaction, and apply locally before returning', async () => {
    const bus = new FakeBus();
    const { svc } = service({ bus });
    svc.onApplicationBootstrap();
    await svc.whenLoaded();
    const seen: { inside: number; outside: number }[] = [];
    bus.onPublish = async ({ tx }) => {
      assert.ok(tx, 'published with the writing transaction');
      const [inside] = (await tx.query('SELECT count(*)::int AS n FROM policies')) as { n: number }[];
      const [outside] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM policies');
      seen.push({ inside: inside.n, outside: outside.n });
    };
    const created = await svc.create({ subject: { role: 'dev' }, effect: 'deny', operations: ['tools/call'], targets: ['github__*'] });
    assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, false, 'in effect when create returns');
    await svc.patch(created.id, { targets: ['gitlab__*'] });
    assert.equal(svc.decide(dev, 'tools/call', 'github__search').allowed, true);
    await svc.remove(created.id);
    assert.deepEqual(
      seen,
      [
        { inside: 1, outside: 0 },
        { inside: 1, outside: 1 },
        { inside: 0, outside: 1 },
      ],
      'each notification is sent before its change commits (so NOTIFY is delivered iff it commits)',
    );
    assert.deepEqual(
      bus.published.map((p) => p.topic),
      ['policies.changed', 'policies.changed', 'policies.changed'],
    );
  });

  it('a view that allows every tool shares the catalog’s tools array (what is cached per list is per catalog); a policy change gives a new view', async () => {
    const { svc } = service();
    svc.onApplicationBootstrap();
    await svc.whenLoaded();
    const tool = (name: string) => ({ name, inputSchema: { type: 'object' as const } });
    const catalog = buildCatalog([{ server: 'github', tools: [tool('search'), tool('push')], prompts: [], resources: [], resourceTemplates: [], toolFilter: {} }], 'aggregate');
    const all = svc.view(catalog, '', dev);
    assert.equal(all.tools, catalog.tools, 'every tool allowed: the catalog’s own array');
    assert.equal(all.toolsJson, catalog.toolsJson);
    assert.equal(svc.view(catalog, '', { ...dev, userId: 'u2' }).tools, catalog.tools, 'shared by every principal’s view');
    const created = await svc.create({ subject: { role: 'dev' }, effect: 'deny', operations: ['tools/call'], targets: ['github__push'] });
    const some = svc.view(catalog, '', dev);
    assert.notEqual(some.tools, catalog.tools, 'a subset is its own array');
    assert.deepEqual(
      some.tools.map((t) => t.name),
      ['github__search'],
    );
    assert.equal(some.toolsJson, JSON.stringify(some.tools));
    await svc.remove(created.id);
    assert.equal(svc.view(catalog, '', dev).tools, catalog.tools, 'allowed again: the catalog’s array again');
  });
});
