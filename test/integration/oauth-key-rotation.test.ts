import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../../src/config/config.schema.js';
import { SchemaStateService } from '../../src/database/schema-state.service.js';
import { KeyRotationService } from '../../src/oauth-server/key-rotation.service.js';
import { SigningKeysService } from '../../src/oauth-server/signing-keys.service.js';
import { KEY_RING } from '../../src/secrets/key-ring.provider.js';
import type { KeyRing } from '../../src/secrets/secret-crypto.js';
import { configFrom, startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { FakeClock } from '../support/fake-clock.js';
import { eventually } from '../support/upstreams.js';

const DAY = 24 * 3_600_000;

interface KeyRow {
  kid: string;
  alg: string;
  created_at: Date;
  active_from: Date;
  retired_at: Date | null;
  now: Date;
}

/**
 * Automatic signing key rotation (GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL) on two "replicas" —
 * two SigningKeysService + KeyRotationService pairs on one database, as two Gatehouse processes
 * have — with a fake clock shared by both, so a day passes without waiting.
 */
describe('automatic signing key rotation', () => {
  let db: TestDatabase;
  let app: TestApp;
  let config: AppConfig;
  let clock: FakeClock;
  let replicas: KeyRotationService[];

  const sigKeys = (ds: DataSource) =>
    ds.query<KeyRow[]>("SELECT kid, alg, created_at, active_from, retired_at, now() AS now FROM oauth_keys WHERE use = 'sig' ORDER BY created_at, alg");

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'oauth2,api_key', MCP_API_KEYS: 'static-bootstrap-key-0123456789abcdef', GATEHOUSE_OAUTH_SERVER: 'true' });
    await app.app.get(SigningKeysService).keys(); // the first keys, as the first token request would make them
    config = { ...app.config, oauthServer: { ...app.config.oauthServer, keyRotationIntervalMs: DAY } };
    clock = new FakeClock(Date.now());
    const ds = app.app.get(DataSource);
    const ring = app.app.get<KeyRing>(KEY_RING);
    const schema = app.app.get(SchemaStateService);
    replicas = [0, 1].map(() => new KeyRotationService(config, ds, new SigningKeysService(ds, ring, config), schema, clock));
  });

  after(async () => {
    for (const r of replicas ?? []) r.onApplicationShutdown();
    await app?.shutdown('test');
    await db?.drop();
  });

  it('the setting: off by default, a duration in ms, refused below an hour with the accepted values named', () => {
    assert.equal(app.config.oauthServer.keyRotationIntervalMs, 0);
    const base = { DATABASE_URL: db.url, MCP_AUTH_STRATEGY: 'oauth2', GATEHOUSE_OAUTH_SERVER: 'true' };
    assert.equal(configFrom({ ...base, GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL: '2592000000' }).oauthServer.keyRotationIntervalMs, 30 * DAY);
    assert.equal(configFrom({ ...base, GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL: 'off' }).oauthServer.keyRotationIntervalMs, 0);
    assert.throws(() => configFrom({ ...base, GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL: '60000' }), /GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL.*off, or an interval in ms 3600000-/s);
  });

  it('rotates once per interval whatever the number of replicas; new keys are published before they sign, the old ones stay published', async () => {
    const ds = app.app.get(DataSource);
    const before = await sigKeys(ds);
    assert.equal(before.length, 2, 'one ES256 and one RS256 key');
    assert.deepEqual(await Promise.all(replicas.map((r) => r.rotateIfDue())), [undefined, undefined], 'not due yet');
    clock.advance(DAY - 60_000);
    assert.deepEqual(await Promise.all(replicas.map((r) => r.rotateIfDue())), [undefined, undefined], 'a minute short of a day: not due');
    clock.advance(60_000);
    const results = await Promise.all(replicas.map((r) => r.rotateIfDue()));
    assert.equal(results.filter((r) => r !== undefined).length, 1, `exactly one replica rotated: ${JSON.stringify(results)}`);
    const after = await sigKeys(ds);
    assert.equal(after.length, 4);
    const fresh = after.filter((k) => !before.some((b) => b.kid === k.kid));
    assert.deepEqual(fresh.map((k) => k.kid).sort(), [...(results.find((r) => r !== undefined) ?? [])].sort());
    for (const k of fresh) assert.ok(k.active_from.getTime() - k.now.getTime() > 50_000, 'published now, signing about a minute later');
    for (const k of after.filter((a) => before.some((b) => b.kid === a.kid))) {
      assert.ok(k.retired_at && k.retired_at.getTime() - k.now.getTime() > 50_000, 'the old key signs until the new one does');
    }
    const published = await new SigningKeysService(ds, app.app.get<KeyRing>(KEY_RING), config).keys(0);
    assert.deepEqual(published.publicJwks.keys.map((k) => k.kid).sort(), after.map((k) => k.kid).sort(), 'all four keys in the JWKS');
    assert.ok(before.some((b) => b.kid === published.signing[0]?.kid), 'the old ES256 key still signs during the overlap');
    assert.deepEqual(await Promise.all(replicas.map((r) => r.rotateIfDue())), [undefined, undefined], 'just rotated: nothing due');
  });

  it('runs on its own timer: a day later the scheduled check rotates; nothing is scheduled when the setting is off', async () => {
    const ds = app.app.get(DataSource);
    const count = (await sigKeys(ds)).length;
    const scheduled = replicas[0];
    scheduled.onApplicationBootstrap();
    await app.app.get(SchemaStateService).whenMigrated();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(clock.pending, 1, 'one check timer');
    clock.advance(DAY);
    await eventually('a scheduled rotation', async () => ((await sigKeys(ds)).length === count + 2 ? true : undefined), 10_000);
    scheduled.onApplicationShutdown();
    const offClock = new FakeClock(Date.now());
    const off = new KeyRotationService(app.config, ds, app.app.get(SigningKeysService), app.app.get(SchemaStateService), offClock);
    off.onApplicationBootstrap();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(offClock.pending, 0);
    assert.equal(await off.rotateIfDue(), undefined);
  });
});
