import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import { RESYNC_TOPIC } from '../../src/database/change-bus.js';
import { SchemaStateService } from '../../src/database/schema-state.service.js';
import { OAUTH_GRANT_REVOKED, REVOKED_GRANT_MODEL, RevokedGrantsService } from '../../src/oauth-server/revoked-grants.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { FakeBus } from '../support/fake-bus.js';
import { eventually } from '../support/upstreams.js';

/**
 * The revoked-approvals set of one replica (RevokedGrantsService) against a real database, with
 * a bus whose deliveries the test controls: events from other replicas, the transaction a
 * revocation publishes in, reading the markers at start and after a lost bus connection.
 */
describe('revoked approvals, per replica', () => {
  let db: TestDatabase;
  let app: TestApp;
  let ds: DataSource;
  const services: RevokedGrantsService[] = [];

  /** A fresh replica's service on its own fake bus. */
  function replica(bus = new FakeBus()): { service: RevokedGrantsService; bus: FakeBus } {
    const service = new RevokedGrantsService(ds, bus.asService(), app.app.get(SchemaStateService), app.config);
    service.onModuleInit();
    services.push(service);
    return { service, bus };
  }

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'oauth2,api_key', MCP_API_KEYS: 'static-bootstrap-key-0123456789abcdef', GATEHOUSE_OAUTH_SERVER: 'true' });
    ds = app.app.get(DataSource);
  });

  after(async () => {
    for (const s of services) s.onApplicationShutdown();
    await app?.shutdown('test');
    await db?.drop();
  });

  it("another replica's event refuses the grant at once; a payload of the wrong shape is ignored", async () => {
    const { service, bus } = replica();
    assert.equal(await service.isRevoked('g-event'), false);
    bus.emit(OAUTH_GRANT_REVOKED, { id: 'g-event' });
    assert.equal(await service.isRevoked('g-event'), true);
    bus.emit(OAUTH_GRANT_REVOKED, { id: 42 });
    assert.equal(await service.isRevoked('42'), false);
  });

  it('a revocation writes its marker and publishes inside the revoking transaction; a replica started later reads it', async () => {
    const { service, bus } = replica();
    await ds.transaction((em) => service.record(em, ['g-tx', 'g-tx']));
    assert.equal(bus.published.length, 1, 'one event per grant');
    assert.equal(bus.published[0].topic, OAUTH_GRANT_REVOKED.name);
    assert.ok(bus.published[0].tx, 'published in the transaction (delivered on commit only)');
    const rows = await ds.query<{ remaining: number }[]>('SELECT extract(epoch FROM expires_at - now()) AS remaining FROM oauth_models WHERE model = $1 AND id = $2', [REVOKED_GRANT_MODEL, 'g-tx']);
    const lifetimeSec = (app.config.oauthServer.accessTokenTtlMs + app.config.auth.jwt.clockToleranceSec * 1000) / 1000;
    assert.ok(Math.abs(Number(rows[0].remaining) - lifetimeSec) < 5, `kept as long as a token of the grant can live: ${rows[0].remaining} s`);
    assert.equal(await replica().service.isRevoked('g-tx'), true);
  });

  it('a rolled-back revocation leaves no marker', async () => {
    const { service } = replica();
    await assert.rejects(
      ds.transaction(async (em) => {
        await service.record(em, ['g-rolled-back']);
        throw new Error('the delete failed');
      }),
      /the delete failed/,
    );
    assert.equal(await replica().service.isRevoked('g-rolled-back'), false);
  });

  it('markers written while the bus was down are read again after $resync; expired ones never are', async () => {
    const { service, bus } = replica();
    assert.equal(await service.isRevoked('g-lost'), false);
    await replica().service.revoke(['g-lost']); // another replica; its event never reaches this one
    assert.equal(await service.isRevoked('g-lost'), false, 'not yet: the event was lost');
    bus.emit(RESYNC_TOPIC);
    await eventually('the markers re-read', async () => ((await service.isRevoked('g-lost')) ? true : undefined), 5_000);
    await ds.query("INSERT INTO oauth_models (model, id, payload, expires_at) VALUES ($1, 'g-old', '{}', now() - interval '1 second')", [REVOKED_GRANT_MODEL]);
    assert.equal(await replica().service.isRevoked('g-old'), false, 'its tokens have all expired');
  });
});
