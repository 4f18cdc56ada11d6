import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { syncBuiltinESMExports } from 'node:module';
import { describe, it } from 'node:test';
import type { JWTPayload } from 'jose';
import type { PinoLogger } from 'nestjs-pino';
import type { Repository } from 'typeorm';
import type { ApiKeyEntity } from '../../src/api-keys/api-key.entity.js';
import { hashApiKey } from '../../src/api-keys/api-key-format.js';
import { ApiKeysService } from '../../src/api-keys/api-keys.service.js';
import type { AudiencePolicy, JwtVerifier, RequestResource } from '../../src/auth/jwt-verifier.js';
import { TokenAuthenticator } from '../../src/auth/strategies/token-principal.js';
import type { AppConfig } from '../../src/config/config.schema.js';
import type { ChangeBusService } from '../../src/database/change-bus.service.js';
import { FakeBus } from '../support/fake-bus.js';
import { parseKeyRing } from '../../src/secrets/secret-crypto.js';
import type { SecretEntity } from '../../src/secrets/secret.entity.js';
import { SecretsService } from '../../src/secrets/secrets.service.js';
import type { SessionsService } from '../../src/sessions/sessions.service.js';
import type { UpstreamServersService } from '../../src/upstreams/upstream-servers.service.js';
import type { UserEntity } from '../../src/users/user.entity.js';
import { UsersService } from '../../src/users/users.service.js';
import { TEST_ENCRYPTION_KEYS } from '../support/process.js';

/*
 * The stale-read races of issue 9, made deterministic: each service runs on a fake repository
 * whose reads the test holds and releases (the row is captured when the read starts, as a
 * statement's snapshot is), and a fake bus whose events the test delivers by hand. Each test
 * starts a read, commits a change and delivers its event while the read is in flight, releases
 * the read (returning the old row), and then requires the next read to see the new state.
 */

/** Reads that answer with the rows as they were when the read started, once the test releases them. */
class HeldReads {
  /** What the next read returns (the "table"). */
  rows: unknown[] = [];
  /** While true, reads wait in `pending` for `releaseAll`. */
  hold = false;
  count = 0;
  readonly pending: (() => void)[] = [];
  query = (): Promise<unknown> => {
    this.count++;
    const snapshot = structuredClone(this.rows);
    if (!this.hold) return Promise.resolve(snapshot);
    return new Promise((resolve) => this.pending.push(() => resolve(snapshot)));
  };
  releaseAll(): void {
    for (const release of this.pending.splice(0)) release();
  }
}

const logger = { setContext() {}, info() {}, warn() {}, error() {}, debug() {} } as unknown as PinoLogger;
const sessions = { closeForPrincipals: () => Promise.resolve(0) } as unknown as SessionsService;
/** Tokens without `aud`, accepted as `bearer` without MCP_JWT_AUDIENCE; used on the admin API. */
const ANY_AUDIENCE: AudiencePolicy = { publicUrl: 'https://gw', configured: [], allowMissing: true };
const API: RequestResource = { resource: 'https://gw/api', accepts: ['https://gw/api'] };
const tick = () => new Promise((r) => setImmediate(r));
/** Lets a held read start (its promise chain reach the repository). */
async function started(reads: HeldReads, n = 1): Promise<void> {
  for (let i = 0; i < 20 && reads.pending.length < n; i++) await tick();
  assert.equal(reads.pending.length, n, 'the read is in flight');
}

const USER_ID = '7d0f1d2e-1111-4222-8333-944455556666';
const KEY_ID = '0b7a4a3c-aaaa-4bbb-8ccc-dddd0000eeee';

function usersOn(reads: HeldReads, bus: FakeBus): UsersService {
  const repo = { query: reads.query, findOneBy: reads.query } as unknown as Repository<UserEntity>;
  const users = new UsersService(repo, bus as unknown as ChangeBusService, sessions, logger);
  (users as unknown as { onApplicationBootstrap?: () => void }).onApplicationBootstrap?.();
  return users;
}

describe('per-replica caches: a read racing a change is never cached', () => {
  it('secrets: a value read before secrets.changed was handled is not kept (fault 1)', async () => {
    const bus = new FakeBus();
    const ring = parseKeyRing(TEST_ENCRYPTION_KEYS);
    const reads = new HeldReads();
    const row = (value: string) => ({ owner: '*', name: 'TOKEN', key_id: ring.primaryId, ...ring.seal(value, { owner: '*', server: 'vault', name: 'TOKEN' }) });
    const repo = { query: reads.query } as unknown as Repository<SecretEntity>;
    const config = { http: { publicUrl: 'http://gatehouse' } } as AppConfig;
    const secrets = new SecretsService(repo, ring, config, {} as UpstreamServersService, bus as unknown as ChangeBusService, logger);
    (secrets as unknown as { onApplicationBootstrap?: () => void }).onApplicationBootstrap?.();

    reads.rows = [row('old')];
    reads.hold = true;
    const racing = secrets.forCaller('vault', 'alice');
    await started(reads);
    // Another replica changes the secret; its notification is handled while our read is out.
    reads.rows = [row('new')];
    bus.emit('secrets.changed', { server: 'vault', owner: '*' });
    reads.hold = false;
    reads.releaseAll();
    await racing;
    assert.equal((await secrets.forCaller('vault', 'alice')).values.get('TOKEN'), 'new', 'the next call uses the new value');
  });

  it('API keys: a key revoked while a verify is in flight is not cached as valid (fault 2)', async () => {
    const bus = new FakeBus();
    const reads = new HeldReads();
    const pepper = 'pepper-for-the-race-test-0123456789';
    const key = 'gatehouse_racetestkey0123456789abcdefghij';
    const repo = { query: reads.query, update: () => Promise.resolve() } as unknown as Repository<ApiKeyEntity>;
    const config = { auth: { staticApiKeys: [], apiKeyPepper: pepper } } as unknown as AppConfig;
    const users = usersOn(new HeldReads(), bus);
    const keys = new ApiKeysService(repo, config, bus as unknown as ChangeBusService, sessions, logger, users);
    (keys as unknown as { onApplicationBootstrap?: () => void }).onApplicationBootstrap?.();
    const keyRow = (revoked: boolean) => ({
      id: KEY_ID,
      name: 'bot',
      user_id: null,
      role: 'member',
      scopes: ['mcp'],
      expires_at: null,
      revoked_at: revoked ? new Date() : null,
      key_hash: hashApiKey(key, pepper),
      owner_disabled: null,
      owner_roles: null,
      owner_groups: null,
      owner_email: null,
      owner_name: null,
    });

    reads.rows = [keyRow(false)];
    reads.hold = true;
    const racing = keys.verify(key);
    await started(reads);
    reads.rows = [keyRow(true)];
    bus.emit('api_keys.changed', { id: KEY_ID });
    reads.hold = false;
    reads.releaseAll();
    await racing;
    assert.deepEqual(await keys.verify(key), { problem: 'the API key has been revoked' });
  });

  it("API keys: an owner disabled while a verify reads them is seen at once (owner from UsersService.byId)", async () => {
    const bus = new FakeBus();
    const keyReads = new HeldReads();
    const userReads = new HeldReads();
    const pepper = 'pepper-for-the-owner-test-0123456789';
    const key = 'gatehouse_ownertestkey0123456789abcdefgh';
    const repo = { query: keyReads.query, update: () => Promise.resolve() } as unknown as Repository<ApiKeyEntity>;
    const config = { auth: { staticApiKeys: [], apiKeyPepper: pepper } } as unknown as AppConfig;
    const keys = new ApiKeysService(repo, config, bus as unknown as ChangeBusService, sessions, logger, usersOn(userReads, bus));
    keyReads.rows = [{ id: KEY_ID, name: 'bot', user_id: USER_ID, role: 'member', scopes: ['mcp'], expires_at: null, revoked_at: null }];
    const owner = (disabled: boolean) => ({ id: USER_ID, roles: ['member'], groups: [], email: null, displayName: 'Owner', disabled });
    // findOneBy answers one row (not an array): HeldReads clones whatever `rows` holds.
    userReads.rows = owner(false) as unknown as unknown[];
    userReads.hold = true;
    const racing = keys.verify(key);
    await started(userReads);
    userReads.rows = owner(true) as unknown as unknown[];
    bus.emit('users.changed', { id: USER_ID });
    userReads.hold = false;
    userReads.releaseAll();
    await racing;
    assert.deepEqual(await keys.verify(key), { problem: "the API key's owner is disabled" });
  });

  it('API keys: random keys are remembered apart and never evict a valid key', async () => {
    const bus = new FakeBus();
    const reads = new HeldReads();
    const pepper = 'pepper-for-the-spray-test-0123456789';
    const key = 'gatehouse_spraytestkey0123456789abcdefgh';
    const hash = hashApiKey(key, pepper);
    const repo = {
      query: (_sql: string, [h]: [string]) => (h === hash ? reads.query() : Promise.resolve([])),
      update: () => Promise.resolve(),
    } as unknown as Repository<ApiKeyEntity>;
    const config = { auth: { staticApiKeys: [], apiKeyPepper: pepper } } as unknown as AppConfig;
    const keys = new ApiKeysService(repo, config, bus as unknown as ChangeBusService, sessions, logger, usersOn(new HeldReads(), bus));
    reads.rows = [{ id: KEY_ID, name: 'bot', user_id: null, role: 'member', scopes: ['mcp'], expires_at: null, revoked_at: null }];
    assert.ok('principal' in (await keys.verify(key)));
    for (let i = 0; i < 60_000; i++) assert.deepEqual(await keys.verify(`gatehouse_random${i}`), { problem: 'the API key is not valid' });
    assert.ok('principal' in (await keys.verify(key)));
    assert.equal(reads.count, 1, 'the valid key was never evicted by the spray (MAX_CACHED is 50,000)');
  });

  it('users: a role change racing a resolve is not cached (fault 3)', async () => {
    const bus = new FakeBus();
    const reads = new HeldReads();
    const users = usersOn(reads, bus);
    const identity = { issuer: 'https://idp', subject: 'alice', email: null, displayName: null, groups: [] };
    reads.rows = [{ id: USER_ID, roles: ['member'], disabled: false, created: false }];
    reads.hold = true;
    const racing = users.resolve(identity);
    await started(reads);
    reads.rows = [{ id: USER_ID, roles: ['member'], disabled: true, created: false }];
    bus.emit('users.changed', { id: USER_ID });
    reads.hold = false;
    reads.releaseAll();
    await racing;
    assert.equal((await users.resolve(identity)).disabled, true, 'the disabled flag is seen');
  });

  it('token principals: a role change racing a token resolution is not cached (fault 3)', async () => {
    const bus = new FakeBus();
    const reads = new HeldReads();
    const users = usersOn(reads, bus);
    const payload: JWTPayload = { iss: 'https://idp', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 };
    const verifier = { verify: () => Promise.resolve(payload) } as unknown as JwtVerifier;
    const tokens = new TokenAuthenticator(users, verifier, 'bearer', { roles: 'roles', groups: 'groups', defaultIssuer: 'x' }, ANY_AUDIENCE, bus);
    reads.rows = [{ id: USER_ID, roles: ['member'], disabled: false, created: false }];
    reads.hold = true;
    const racing = tokens.authenticate('token-1', API);
    await started(reads);
    reads.rows = [{ id: USER_ID, roles: ['admin'], disabled: false, created: false }];
    bus.emit('users.changed', { id: USER_ID });
    reads.hold = false;
    reads.releaseAll();
    await racing;
    assert.deepEqual((await tokens.authenticate('token-1', API)).roles, ['admin'], 'the new role is seen');
    // And a change after caching drops the cached principal too.
    reads.rows = [{ id: USER_ID, roles: ['member'], disabled: false, created: false }];
    bus.emit('users.changed', { id: USER_ID });
    assert.deepEqual((await tokens.authenticate('token-1', API)).roles, ['member']);
  });

  it('the writing replica sees its own user change at once, before the event comes back over the bus', async () => {
    const bus = new FakeBus(); // records publishes, delivers nothing
    const reads = new HeldReads();
    const stored = { id: USER_ID, issuer: 'https://idp', subject: 'alice', roles: ['member'], disabled: false, createdAt: new Date(), lastSeenAt: null };
    const em = {
      findOne: () => Promise.resolve({ ...stored }),
      merge: (_entity: unknown, target: object, input: object) => Object.assign(target, input),
      save: (row: typeof stored) => {
        reads.rows = [{ id: USER_ID, roles: row.roles, disabled: row.disabled, created: false }];
        return Promise.resolve(row);
      },
      query: () => Promise.resolve([]),
    };
    const repo = { query: reads.query, findOneBy: reads.query, manager: { transaction: (fn: (m: typeof em) => Promise<unknown>) => fn(em) } } as unknown as Repository<UserEntity>;
    const users = new UsersService(repo, bus as unknown as ChangeBusService, sessions, logger);
    const payload: JWTPayload = { iss: 'https://idp', sub: 'alice', exp: Math.floor(Date.now() / 1000) + 600 };
    const tokens = new TokenAuthenticator(users, { verify: () => Promise.resolve(payload) } as unknown as JwtVerifier, 'bearer', { roles: 'roles', groups: 'groups', defaultIssuer: 'x' }, ANY_AUDIENCE, bus);
    reads.rows = [{ id: USER_ID, roles: ['member'], disabled: false, created: false }];
    assert.deepEqual((await tokens.authenticate('token-1', API)).roles, ['member']);
    const admin = { userId: null, id: 'api_key:static-1', scopes: ['admin:write', 'servers:write'] } as unknown as Parameters<UsersService['patch']>[2];
    await users.patch(USER_ID, { roles: ['admin'] }, admin);
    assert.deepEqual(bus.published.map(({ topic, data }) => ({ topic, data })), [{ topic: 'users.changed', data: { id: USER_ID } }], 'published (in the transaction), not yet delivered');
    assert.deepEqual((await tokens.authenticate('token-1', API)).roles, ['admin'], 'the next request here sees the new role');
  });
});

/** Counts `crypto.createHmac` calls while `body` runs (the keyed hash of a presented API key is one). */
async function countingHmacs<T>(body: (count: () => number) => Promise<T>): Promise<T> {
  const original = crypto.createHmac;
  let n = 0;
  crypto.createHmac = ((...args: Parameters<typeof original>) => {
    n++;
    return original(...args);
  });
  syncBuiltinESMExports();
  try {
    return await body(() => n);
  } finally {
    crypto.createHmac = original;
    syncBuiltinESMExports();
  }
}

describe('API keys: the keyed hash of a presented key is remembered, never its verdict', () => {
  it('hashes a verified key once, still refuses it at once when revoked, and remembers no unknown key', async () => {
    const bus = new FakeBus();
    const reads = new HeldReads();
    const pepper = 'pepper-for-the-memo-test-0123456789';
    const key = 'gatehouse_memotestkey0123456789abcdefghijk';
    const staticKey = 'a-static-bootstrap-key-0123456789';
    const stored = hashApiKey(key, pepper);
    const staticId = `static-${hashApiKey(staticKey, pepper).slice(0, 12)}`;
    const repo = {
      query: (_sql: string, [h]: [string]) => (h === stored ? reads.query() : Promise.resolve([])),
      update: () => Promise.resolve(),
    } as unknown as Repository<ApiKeyEntity>;
    const config = { auth: { staticApiKeys: [staticKey], apiKeyPepper: pepper } } as unknown as AppConfig;
    const keys = new ApiKeysService(repo, config, bus as unknown as ChangeBusService, sessions, logger, usersOn(new HeldReads(), bus));
    const row = (revoked: boolean) => ({ id: KEY_ID, name: 'bot', user_id: null, role: 'member', scopes: ['mcp'], expires_at: null, revoked_at: revoked ? new Date() : null });
    reads.rows = [row(false)];
    await countingHmacs(async (hmacs) => {
      for (let i = 0; i < 3; i++) assert.ok('principal' in (await keys.verify(key)));
      assert.equal(hmacs(), 1, 'one HMAC for three verifications of a stored key');
      for (let i = 0; i < 3; i++) assert.equal(((await keys.verify(staticKey)) as { principal: { keyId: string } }).principal.keyId, staticId);
      assert.equal(keys.isStaticKey(staticKey), true);
      assert.equal(keys.isStaticKey(key), false);
      assert.equal(hmacs(), 2, 'one more for the static key, verified three times and classified twice');
      reads.rows = [row(true)];
      bus.emit('api_keys.changed', { id: KEY_ID });
      assert.deepEqual(await keys.verify(key), { problem: 'the API key has been revoked' }, 'revocation is checked on the record: effective at once');
      const unknown = 'gatehouse_unknownkey0123456789abcdefghijklm';
      for (let i = 0; i < 2; i++) assert.deepEqual(await keys.verify(unknown), { problem: 'the API key is not valid' });
      assert.equal(hmacs(), 4, 'a key that matches nothing is hashed every time (never remembered)');
    });
  });
});
