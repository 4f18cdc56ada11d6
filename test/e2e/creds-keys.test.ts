import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { hashApiKey } from '../../src/api-keys/api-key-format.js';
import { ApiKeysService } from '../../src/api-keys/api-keys.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { eventually } from '../support/upstreams.js';

/**
 * Issue 10, credentials: a credential cannot mint one that outlives or exceeds it, keys minted
 * by a key are revoked with it (on every replica, sessions ended), the anonymous principal
 * mints none, static keys have identities derived from the key, and a spray of unknown keys
 * neither evicts valid keys nor costs more than one query each. Real PostgreSQL, real HTTP.
 */

const SECRET = 'creds-keys-secret-that-is-long-enough-0123';
const STATIC_KEY = 'creds-keys-static-admin-key-0123456789';
/** The default GATEHOUSE_API_KEY_PEPPER (config.schema.ts). */
const DEFAULT_PEPPER = 'gatehouse-api-key-v1';
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', 'content-type': 'application/json' };
const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'keys', version: '1' } } };

interface KeyBody {
  id: string;
  key: string;
  expiresAt: string | null;
  createdByKeyId: string | null;
  keyId: string;
  scopes: string[];
  error: { code: string; message: string; details: { field: string; max?: string } };
}

async function call(app: TestApp, path: string, headers: Record<string, string>, body?: unknown, method?: string): Promise<{ status: number; body: KeyBody }> {
  const res = await fetch(`${app.url}${path}`, {
    method: method ?? (body === undefined ? 'GET' : 'POST'),
    headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : {}) as KeyBody };
}

const ENV = { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: SECRET, MCP_API_KEYS: STATIC_KEY, HTTP_ALLOWED_HOSTS: '127.0.0.1,localhost' };

describe('credentials: minting, lineage, static identities, negative cache', () => {
  let db: TestDatabase;
  let app: TestApp;
  const admin = { 'x-api-key': STATIC_KEY };
  const mint = (headers: Record<string, string>, body: Record<string, unknown>) => call(app, '/api/v1/api-keys', headers, { name: 'k', ...body });

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, ENV);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it("caps a new key's expiry at the creating credential's: a key's expires_at, a JWT's exp", async () => {
    const parentExpiry = new Date(Date.now() + 3_600_000);
    parentExpiry.setMilliseconds(0);
    const parent = await mint(admin, { role: 'admin', expiresAt: parentExpiry.toISOString() });
    assert.equal(parent.status, 201, JSON.stringify(parent.body));
    const byKey = { 'x-api-key': parent.body.key };

    const inherited = await mint(byKey, {});
    assert.equal(inherited.status, 201, JSON.stringify(inherited.body));
    assert.equal(inherited.body.expiresAt, parentExpiry.toISOString(), 'without expiresAt: the creator’s expiry');
    assert.equal(inherited.body.createdByKeyId, parent.body.id);
    const earlier = new Date(Date.now() + 600_000).toISOString();
    assert.equal((await mint(byKey, { expiresAt: earlier })).body.expiresAt, earlier);
    for (const expiresAt of [new Date(parentExpiry.getTime() + 1000).toISOString(), null]) {
      const refused = await mint(byKey, { expiresAt });
      assert.equal(refused.status, 400, String(expiresAt));
      assert.equal(refused.body.error.details.field, 'expiresAt');
      assert.equal(refused.body.error.details.max, parentExpiry.toISOString());
      assert.match(refused.body.error.message, new RegExp(`^expiresAt: expected ${parentExpiry.toISOString()} or earlier`));
    }

    const exp = Math.floor(Date.now() / 1000) + 300;
    const jwt = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'minter' }, { expiresIn: exp })}` };
    const fromJwt = await mint(jwt, {});
    assert.equal(fromJwt.status, 201, JSON.stringify(fromJwt.body));
    assert.equal(fromJwt.body.expiresAt, new Date(exp * 1000).toISOString());
    assert.equal(fromJwt.body.createdByKeyId, null);
    assert.equal((await mint(jwt, { expiresAt: new Date((exp + 60) * 1000).toISOString() })).status, 400);
    // A credential without expiry (a static key) mints keys without one.
    assert.equal((await mint(admin, {})).body.expiresAt, null);
  });

  it('never widens scopes or role', async () => {
    const member = await mint(admin, { role: 'member' });
    const narrow = await mint(admin, { role: 'admin', scopes: ['admin:read'] });
    for (const [creator, body, field, status] of [
      [member.body.key, { scopes: ['admin:read'] }, 'scopes', 400], // beyond the member role
      [member.body.key, { role: 'admin', scopes: ['mcp'] }, 'role', 403],
      [narrow.body.key, { role: 'admin', scopes: ['admin:write'] }, 'role', 403],
      [narrow.body.key, { role: 'member', scopes: ['mcp'] }, 'scopes', 403], // the creator holds admin:read only
    ] as const) {
      const res = await mint({ 'x-api-key': creator }, body);
      assert.equal(res.status, status, JSON.stringify(body));
      assert.equal(res.body.error.details.field, field);
    }
  });

  it('revokes the keys a key minted, and theirs, with it, on every replica, and ends their sessions there', async () => {
    const replica = await startTestApp(db.url, ENV);
    try {
      const root = await mint(admin, { role: 'admin' });
      const child = await mint({ 'x-api-key': root.body.key }, { role: 'admin' });
      const grandchild = await mint({ 'x-api-key': child.body.key }, { role: 'member' });
      const bystander = await mint(admin, { role: 'member' });
      assert.equal(grandchild.body.createdByKeyId, child.body.id);
      const gk = { 'x-api-key': grandchild.body.key };
      for (const k of [child.body.key, grandchild.body.key]) assert.equal((await call(replica, '/api/v1/me', { 'x-api-key': k })).status, 200, 'cached on the replica');
      const opened = await fetch(`${replica.url}/mcp`, { method: 'POST', headers: { ...MCP_HEADERS, ...gk }, body: JSON.stringify(initialize) });
      assert.equal(opened.status, 200);
      await opened.text();
      const session = opened.headers.get('mcp-session-id')!;
      const stream = await fetch(`${replica.url}/mcp`, { headers: { ...MCP_HEADERS, accept: 'text/event-stream', 'mcp-session-id': session, ...gk } });
      assert.equal(stream.status, 200);
      const ended = stream.text();

      assert.equal((await call(app, `/api/v1/api-keys/${root.body.id}`, admin, undefined, 'DELETE')).status, 204);
      await ended; // the replica's open stream for the grandchild's session ends
      for (const k of [root.body.key, child.body.key, grandchild.body.key]) {
        await eventually('refused on the replica', async () => ((await call(replica, '/api/v1/me', { 'x-api-key': k })).status === 401 ? true : undefined), 1000);
      }
      const rows = await db.query<{ id: string; revoked_at: Date | null }>('SELECT id, revoked_at FROM api_keys WHERE id = ANY($1)', [
        [root.body.id, child.body.id, grandchild.body.id, bystander.body.id],
      ]);
      assert.deepEqual(Object.fromEntries(rows.map((r) => [r.id, r.revoked_at !== null])), {
        [root.body.id]: true,
        [child.body.id]: true,
        [grandchild.body.id]: true,
        [bystander.body.id]: false,
      });
      const [closed] = await db.query<{ closed_at: Date | null }>("SELECT closed_at FROM mcp_sessions WHERE principal = 'api_key:' || $1", [grandchild.body.id]);
      assert.ok(closed.closed_at, "the grandchild's session is closed");
      assert.equal((await call(replica, '/api/v1/me', { 'x-api-key': bystander.body.key })).status, 200, 'other keys are unaffected');
    } finally {
      await replica.shutdown('test done');
    }
  });

  it('a key minted while its creator is being revoked is revoked too, and a mint racing a revocation is refused (row locks)', async () => {
    /** Resolves once some backend on the test database waits for a row lock (no sleeps). */
    const someoneWaits = () =>
      eventually('a backend waits for the lock', async () =>
        (await db.query("SELECT 1 FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'", [db.name])).length > 0 ? true : undefined,
      );
    const tx = new pg.Client({ connectionString: db.url });
    await tx.connect();
    try {
      // 1. A mint in flight (the creator share-locked as create() does, its row inserted, not
      //    committed) while the creator is revoked: the revocation waits, then revokes it too.
      const root = await mint(admin, { role: 'admin' });
      await tx.query('BEGIN');
      await tx.query('SELECT 1 FROM api_keys WHERE id = $1 FOR SHARE', [root.body.id]);
      const inserted = await tx.query<{ id: string }>(
        "INSERT INTO api_keys (name, prefix, key_hash, role, scopes, created_by, created_by_key_id) VALUES ('in-flight', 'gatehouse_xxxxxx', $2, 'member', '{mcp}', 'api_key:' || $1, $1::uuid) RETURNING id",
        [root.body.id, 'f'.repeat(64)],
      );
      const revoking = call(app, `/api/v1/api-keys/${root.body.id}`, admin, undefined, 'DELETE');
      await someoneWaits();
      await tx.query('COMMIT');
      assert.equal((await revoking).status, 204);
      const [child] = await db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM api_keys WHERE id = $1', [inserted.rows[0].id]);
      assert.ok(child.revoked_at, 'the key minted during the revocation is revoked with its creator');

      // 2. A revocation in flight (row locked and updated, not committed) while the key, still
      //    valid in this replica's cache, mints: the mint waits, then is refused.
      const creator = await mint(admin, { role: 'admin' });
      const byCreator = { 'x-api-key': creator.body.key };
      assert.equal((await call(app, '/api/v1/me', byCreator)).status, 200, 'cached as valid');
      await tx.query('BEGIN');
      await tx.query('SELECT 1 FROM api_keys WHERE id = $1 FOR UPDATE', [creator.body.id]);
      await tx.query('UPDATE api_keys SET revoked_at = now() WHERE id = $1', [creator.body.id]);
      const minting = mint(byCreator, { name: 'racing' });
      await someoneWaits();
      await tx.query('COMMIT');
      const raced = await minting;
      assert.equal(raced.status, 401, JSON.stringify(raced.body));
      assert.equal((await db.query("SELECT 1 FROM api_keys WHERE name = 'racing'")).length, 0, 'no key outlives its revoked creator');
    } finally {
      await tx.query('ROLLBACK').catch(() => undefined);
      await tx.end();
    }
  });

  // The 60,000-key spray against MAX_CACHED (50,000) runs in test/integration/caches-races.test.ts
  // ('random keys are remembered apart ...'); this one counts queries on the real database.
  it('a spray of unknown keys evicts no valid key and costs at most one query each; a repeated bad key costs none', async () => {
    const keys = app.app.get(ApiKeysService);
    const valid = await Promise.all([1, 2, 3].map(async () => (await mint(admin, {})).body.key));
    for (const k of valid) assert.ok('principal' in (await keys.verify(k)));
    // Count the service's queries (the real repository, on the real database).
    const repo = (keys as unknown as { repo: { query: (...args: unknown[]) => Promise<unknown> } }).repo;
    const query = repo.query.bind(repo);
    let queries = 0;
    repo.query = (...args: unknown[]) => {
      queries++;
      return query(...args);
    };
    try {
      const SPRAY = 2_000;
      let next = 0;
      let last = '';
      await Promise.all(
        Array.from({ length: 16 }, async () => {
          while (next < SPRAY) {
            next++;
            last = `gatehouse_${randomBytes(32).toString('base64url')}`;
            const check = await keys.verify(last);
            assert.ok('problem' in check);
          }
        }),
      );
      assert.ok(queries <= SPRAY, `${queries} queries for ${SPRAY} unknown keys`);
      queries = 0;
      for (const k of valid) assert.ok('principal' in (await keys.verify(k)), 'still valid');
      assert.equal(queries, 0, 'valid keys are still served from the cache after the spray');
      for (let i = 0; i < 100; i++) assert.ok('problem' in (await keys.verify(last)));
      assert.equal(queries, 0, 'a bad key seen recently is answered from the negative cache');
    } finally {
      repo.query = query;
    }
  });
});

describe('credentials: the anonymous principal and static keys', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('refuses to mint keys under MCP_AUTH_STRATEGY=none (403 naming the CLI)', async () => {
    const open = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'none' });
    try {
      const res = await call(open, '/api/v1/api-keys', {}, { name: 'laptop' });
      assert.equal(res.status, 403, JSON.stringify(res.body));
      assert.match(res.body.error.message, /API keys need a real principal.*create-admin-key/);
      assert.equal((await db.query('SELECT 1 FROM api_keys')).length, 0);
    } finally {
      await open.shutdown('test done');
    }
  });

  it('gives static MCP_API_KEYS identities derived from the key, so reordering the list changes nobody', async () => {
    const [k1, k2] = ['first-static-key-0123456789abcdef', 'second-static-key-0123456789abcdef'];
    const expected = (k: string) => `static-${hashApiKey(k, DEFAULT_PEPPER).slice(0, 12)}`;
    const ids: Record<string, string>[] = [];
    for (const list of [`${k1},${k2}`, `${k2},${k1}`]) {
      const gw = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: list });
      try {
        const seen: Record<string, string> = {};
        for (const k of [k1, k2]) seen[k] = (await call(gw, '/api/v1/me', { 'x-api-key': k })).body.keyId;
        ids.push(seen);
      } finally {
        await gw.shutdown('test done');
      }
    }
    assert.deepEqual(ids[0], { [k1]: expected(k1), [k2]: expected(k2) });
    assert.deepEqual(ids[1], ids[0], 'the same key, the same identity, whatever its position');
  });
});
