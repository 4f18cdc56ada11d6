import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { JWKS_REFETCH_COOLDOWN_MS } from '../../src/auth/jwt-verifier.js';
import { LocalIssuer, hsToken, unsignedToken } from '../support/identity.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

const SECRET = 'test-secret-that-is-long-enough-0123456789';
const STATIC_KEY = 'static-bootstrap-key-0123456789abcdef';

/** The fields these tests read from JSON answers (whichever endpoint gave them). */
interface Body {
  error: { code: string; message: string; details: { field: string } };
  jsonrpc: string;
  key: string;
  id: string;
  scopes: string[];
  roles: string[];
  groups: string[];
  method: string;
  email: string;
  userId: string;
  keyId: string;
  items: { id: string; subject: string; prefix: string }[];
  resource: string;
  authorization_servers: string[];
  status: { state: string };
}

interface Reply {
  status: number;
  headers: Headers;
  body: Body;
}

async function call(app: TestApp, path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
  const res = await fetch(`${app.url}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  let text = await res.text();
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) text = /^data: (.*)$/m.exec(text)?.[1] ?? '';
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Body };
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'auth-test', version: '1' } },
};

async function addEverything(app: TestApp, auth: Record<string, string>): Promise<void> {
  const res = await call(app, '/api/v1/servers', {
    headers: auth,
    body: { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
  });
  assert.equal(res.status, 201, JSON.stringify(res.body));
  await eventually('connected', async () => ((await call(app, '/api/v1/servers/everything', { headers: auth })).body.status.state === 'connected' ? true : undefined));
}

/** Opens a legacy session with raw HTTP; returns its id. */
async function openSession(app: TestApp, auth: Record<string, string>): Promise<string> {
  const res = await fetch(`${app.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', ...MCP_HEADERS, ...auth }, body: JSON.stringify(initialize) });
  assert.equal(res.status, 200, await res.clone().text());
  await res.text();
  const id = res.headers.get('mcp-session-id');
  assert.ok(id);
  return id;
}

const listTools = (app: TestApp, session: string, auth: Record<string, string>) =>
  call(app, '/mcp', { headers: { ...MCP_HEADERS, 'mcp-session-id': session, ...auth }, body: { jsonrpc: '2.0', id: 2, method: 'tools/list' } });

describe('bearer JWT (HS256) and API keys', () => {
  let db: TestDatabase;
  let app: TestApp;
  const admin = { 'x-api-key': STATIC_KEY };
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'bearer,api_key',
      MCP_JWT_SECRET: SECRET,
      MCP_JWT_ISSUER: 'https://idp.example.com',
      MCP_JWT_AUDIENCE: 'gatehouse',
      MCP_API_KEYS: STATIC_KEY,
      PUBLIC_URL: 'https://mcp.example.com',
      HTTP_ALLOWED_HOSTS: '127.0.0.1,localhost',
      // Some tests here open sessions without credentials (the default is now true with MCP_AUTH_REQUIRE).
      MCP_SESSION_AUTH_REQUIRE_FOR_SESSION: 'false',
    });
    await addEverything(app, admin);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  const token = (claims: Record<string, unknown> = {}, options: Parameters<typeof hsToken>[2] = {}) =>
    hsToken(SECRET, { sub: 'alice', email: 'alice@example.com', name: 'Alice', aud: 'gatehouse', ...claims }, { issuer: 'https://idp.example.com', ...options });

  it('answers a request without credentials with 401 and a challenge naming the metadata', async () => {
    const api = await call(app, '/api/v1/servers');
    assert.equal(api.status, 401);
    assert.equal(api.body.error.code, 'unauthorized');
    assert.equal(api.headers.get('www-authenticate'), 'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/api"');
    const mcp = await call(app, '/mcp', { headers: MCP_HEADERS, body: { jsonrpc: '2.0', id: 1, method: 'tools/list' } });
    assert.equal(mcp.status, 401);
    assert.equal(mcp.body.jsonrpc, '2.0');
    assert.equal(
      mcp.headers.get('www-authenticate'),
      'Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="mcp"',
    );
    // Public routes stay open.
    assert.equal((await call(app, '/healthz')).status, 200);
    const prm = await call(app, '/.well-known/oauth-protected-resource/mcp');
    assert.equal(prm.status, 200);
    assert.deepEqual(prm.body, {
      resource: 'https://mcp.example.com/mcp',
      resource_name: 'Gatehouse MCP gateway',
      bearer_methods_supported: ['header'],
      scopes_supported: ['mcp', 'admin:read', 'admin:write', 'servers:write'],
    });
    assert.equal((await call(app, '/.well-known/oauth-protected-resource')).body.resource, 'https://mcp.example.com/mcp');
  });

  it('accepts a valid token, creates the user on first sight, and keeps members out of the admin API', async () => {
    const t = await token();
    const me = await call(app, '/api/v1/me', { headers: bearer(t) });
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.equal(me.body.method, 'bearer');
    assert.equal(me.body.email, 'alice@example.com');
    assert.deepEqual(me.body.roles, ['member']);
    assert.deepEqual(me.body.scopes, ['mcp']);
    const rows = await db.query<{ issuer: string; subject: string }>('SELECT issuer, subject FROM users');
    assert.deepEqual(rows, [{ issuer: 'https://idp.example.com', subject: 'alice' }]);
    assert.equal(me.body.userId, (await db.query<{ id: string }>('SELECT id FROM users'))[0].id);

    const denied = await call(app, '/api/v1/servers', { headers: bearer(t) });
    assert.equal(denied.status, 403);
    assert.match(denied.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
    // A roles claim grants admin.
    const adminToken = await token({ sub: 'root', roles: ['admin'] });
    assert.equal((await call(app, '/api/v1/servers', { headers: bearer(adminToken) })).status, 200);
  });

  it('refuses expired, not-yet-valid, foreign, forged and unsigned tokens with 401 invalid_token', async () => {
    const now = Math.floor(Date.now() / 1000);
    const cases: [string, string, RegExp][] = [
      ['expired', await token({}, { expiresIn: now - 120 }), /expired/],
      ['not yet valid', await token({}, { notBefore: now + 600 }), /not yet valid/],
      ['wrong issuer', await token({}, { issuer: 'https://evil.example.com' }), /issuer/],
      ['wrong audience', await token({ aud: 'someone-else' }), /audience/],
      ['bad signature', await hsToken('another-secret-that-is-long-enough-000000', { sub: 'x', aud: 'gatehouse' }, { issuer: 'https://idp.example.com' }), /signature/],
      ['alg none', unsignedToken({ sub: 'x', aud: 'gatehouse', iss: 'https://idp.example.com' }), /algorithm|malformed/],
      ['HS512 not configured?', await token({}, { alg: 'HS512' }), /./],
      ['no sub', await hsToken(SECRET, { aud: 'gatehouse' }, { issuer: 'https://idp.example.com' }), /sub/],
      ['garbage', 'not.a.jwt', /malformed|not valid/],
    ];
    for (const [what, t, reason] of cases) {
      const res = await call(app, '/api/v1/me', { headers: bearer(t) });
      if (what === 'HS512 not configured?') {
        // HS512 is one of the default HMAC algorithms with a secret: accepted.
        assert.equal(res.status, 200, what);
        continue;
      }
      assert.equal(res.status, 401, what);
      assert.equal(res.body.error.code, 'unauthorized', what);
      assert.match(res.body.error.message, reason, what);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="[^"]+", error="invalid_token", error_description="[^"]+"$/, what);
      assert.ok(!res.body.error.message.includes(t), `${what}: the token is not echoed`);
    }
    // A token leeway within MCP_JWT_CLOCK_TOLERANCE (30 s) is fine.
    assert.equal((await call(app, '/api/v1/me', { headers: bearer(await token({}, { expiresIn: now - 5 })) })).status, 200);
  });

  it('never accepts credentials in the query string', async () => {
    const t = await token();
    for (const q of [`access_token=${t}`, `api_key=${STATIC_KEY}`, `token=${t}`]) {
      const res = await call(app, `/api/v1/me?${q}`, { headers: bearer(t) });
      assert.equal(res.status, 400, q);
      assert.match(res.body.error.message, /query string .* never accepted/);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_request"/);
    }
  });

  it('creates API keys shown once and stored only as a keyed hash; revocation is immediate', async () => {
    const created = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'ci-bot', role: 'member' } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const key = created.body.key;
    assert.match(key, /^gatehouse_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(created.body.scopes, ['mcp']);
    const dump = JSON.stringify(await db.query('SELECT * FROM api_keys'));
    assert.ok(!dump.includes(key) && !dump.includes(key.slice(10)), 'the key is not stored');

    for (const headers of [{ 'x-api-key': key }, bearer(key)]) {
      const me = await call(app, '/api/v1/me', { headers });
      assert.equal(me.status, 200);
      assert.equal(me.body.method, 'api_key');
      assert.equal(me.body.keyId, created.body.id);
    }
    const list = await call(app, '/api/v1/api-keys', { headers: admin });
    assert.equal(list.status, 200);
    assert.ok(!JSON.stringify(list.body).includes(key), 'the list never shows the key');
    assert.equal(list.body.items.find((k) => k.id === created.body.id)?.prefix, key.slice(0, 16));

    // A member key cannot reach the admin API nor mint admin keys.
    assert.equal((await call(app, '/api/v1/servers', { headers: { 'x-api-key': key } })).status, 403);
    const escalate = await call(app, '/api/v1/api-keys', { headers: { 'x-api-key': key }, body: { name: 'x', role: 'admin' } });
    assert.equal(escalate.status, 403);
    assert.equal(escalate.body.error.details.field, 'role');

    assert.equal((await call(app, `/api/v1/api-keys/${created.body.id}`, { method: 'DELETE', headers: admin })).status, 204);
    const revoked = await call(app, '/api/v1/me', { headers: { 'x-api-key': key } });
    assert.equal(revoked.status, 401);
    assert.match(revoked.body.error.message, /revoked/);
  });

  it('prints a working admin key from the CLI, once, and stores only its hash', async () => {
    const { spawnSync } = await import('node:child_process');
    const run = spawnSync(process.execPath, ['dist/cli.js', 'create-admin-key', '--name', 'bootstrap'], {
      env: { PATH: process.env.PATH, GATEHOUSE_ENV_FILE: '/nonexistent', DATABASE_URL: db.url, LOG_LEVEL: 'warn' },
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    const key = run.stdout.trim();
    assert.match(key, /^gatehouse_[A-Za-z0-9_-]{43}$/);
    assert.match(run.stderr, /created admin key "bootstrap" .* shown once/);
    const me = await call(app, '/api/v1/me', { headers: { 'x-api-key': key } });
    assert.equal(me.status, 200);
    assert.deepEqual(me.body.roles, ['admin']);
    assert.equal((await call(app, '/api/v1/servers', { headers: { 'x-api-key': key } })).status, 200);
    assert.ok(!JSON.stringify(await db.query("SELECT * FROM api_keys WHERE name = 'bootstrap'")).includes(key));
    const bad = spawnSync(process.execPath, ['dist/cli.js', 'create-admin-key'], { env: { PATH: process.env.PATH, GATEHOUSE_ENV_FILE: '/nonexistent' }, encoding: 'utf8' });
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--name NAME is required/);
  });

  it('applies policies to real principals: a role-based deny hides and refuses the tool for members only', async () => {
    const member = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'member-bot' } });
    const memberKey = { 'x-api-key': member.body.key };
    const policy = await call(app, '/api/v1/policies', {
      headers: admin,
      body: { subject: { role: 'member' }, effect: 'deny', operations: ['tools/call'], targets: ['everything__echo'], description: 'members may not echo' },
    });
    assert.equal(policy.status, 201);
    try {
      const client = new LegacyClient({ name: 'member', version: '1' });
      await client.connect(new LegacyTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: memberKey } }));
      const names = (await client.listTools()).tools.map((t) => t.name);
      assert.ok(!names.includes('everything__echo') && names.includes('everything__get-sum'), 'hidden from the member');
      await assert.rejects(client.callTool({ name: 'everything__echo', arguments: { message: 'x' } }), /members may not echo/);
      await client.close();
      const adminClient = new LegacyClient({ name: 'admin', version: '1' });
      await adminClient.connect(new LegacyTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: admin } }));
      assert.ok((await adminClient.listTools()).tools.some((t) => t.name === 'everything__echo'), 'admins still see it');
      await adminClient.close();
    } finally {
      await call(app, `/api/v1/policies/${policy.body.id}`, { method: 'DELETE', headers: admin });
    }
  });

  it('refuses malformed, unknown and expired keys, and bad key requests with field-named 400s', async () => {
    for (const bad of ['gatehouse_short', 'x', `gatehouse_${'A'.repeat(43)}`]) {
      const res = await call(app, '/api/v1/me', { headers: { 'x-api-key': bad } });
      assert.equal(res.status, 401, bad);
      assert.match(res.body.error.message, /not valid/);
    }
    const bad = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: '', role: 'owner', scopes: ['root'], expiresAt: '2020-01-01T00:00:00Z' } });
    assert.equal(bad.status, 400);
    for (const field of ['name', 'role', 'scopes.0', 'expiresAt']) assert.match(bad.body.error.message, new RegExp(`${field.replace('.', '\\.')}: expected`), field);

    const soon = new Date(Date.now() + 1500).toISOString();
    const short = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'short-lived', expiresAt: soon } });
    assert.equal(short.status, 201);
    assert.equal((await call(app, '/api/v1/me', { headers: { 'x-api-key': short.body.key } })).status, 200);
    await new Promise((r) => setTimeout(r, 1700));
    const expired = await call(app, '/api/v1/me', { headers: { 'x-api-key': short.body.key } });
    assert.equal(expired.status, 401);
    assert.match(expired.body.error.message, /expired/);
  });

  it('binds a session to its principal: other credentials get 404, none get 401', async () => {
    const alice = bearer(await token({ sub: 'alice' }));
    const bob = bearer(await token({ sub: 'bob' }));
    const session = await openSession(app, alice);
    assert.equal((await listTools(app, session, alice)).status, 200);
    const hijack = await listTools(app, session, bob);
    assert.equal(hijack.status, 404);
    assert.deepEqual(hijack.body.error, (await listTools(app, 'no-such-session', bob)).body.error, 'same answer as an unknown session');
    assert.equal((await listTools(app, session, {})).status, 401);
    assert.equal((await listTools(app, session, alice)).status, 200, 'the owner is unaffected');
  });

  it('opens a session without credentials (REQUIRE_FOR_SESSION=false) and binds it to the first principal that authenticates', async () => {
    const session = await openSession(app, {});
    const notified = await call(app, '/mcp', {
      headers: { ...MCP_HEADERS, 'mcp-session-id': session },
      body: { jsonrpc: '2.0', method: 'notifications/initialized' },
    });
    assert.equal(notified.status, 202);
    const anonymous = await listTools(app, session, {});
    assert.equal(anonymous.status, 401, 'operations need credentials (REQUIRE_FOR_OPERATIONS=true)');
    const carol = bearer(await token({ sub: 'carol' }));
    assert.equal((await listTools(app, session, carol)).status, 200);
    assert.equal((await listTools(app, session, bearer(await token({ sub: 'dave' })))).status, 404, 'now bound to carol');
    assert.equal((await db.query('SELECT 1 FROM mcp_sessions WHERE principal LIKE $1', ['pending:%'])).length, 0);
  });

  it('refuses a revoked key on every replica within a second, and ends its sessions there', async () => {
    const replica = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'bearer,api_key',
      MCP_JWT_SECRET: SECRET,
      MCP_API_KEYS: STATIC_KEY,
      HTTP_ALLOWED_HOSTS: '127.0.0.1,localhost',
    });
    try {
      const created = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'roaming' } });
      const key = { 'x-api-key': created.body.key };
      const session = await openSession(replica, key);
      assert.equal((await call(replica, '/api/v1/me', { headers: key })).status, 200, 'verified (and cached) on the replica');
      const stream = await fetch(`${replica.url}/mcp`, { headers: { ...MCP_HEADERS, accept: 'text/event-stream', 'mcp-session-id': session, ...key } });
      assert.equal(stream.status, 200);
      const ended = stream.text();
      const revokedAt = Date.now();
      assert.equal((await call(app, `/api/v1/api-keys/${created.body.id}`, { method: 'DELETE', headers: admin })).status, 204);
      await ended; // the replica's open stream for that session ends
      await eventually('refused on the replica', async () => ((await call(replica, '/api/v1/me', { headers: key })).status === 401 ? true : undefined), 1000);
      assert.ok(Date.now() - revokedAt < 1000, `took ${Date.now() - revokedAt} ms`);
    } finally {
      await replica.shutdown('test done');
    }
  });

  it('ends the sessions of a revoked key, and of a disabled user, and lets admins manage users', async () => {
    const created = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'agent' } });
    const key = { 'x-api-key': created.body.key };
    const session = await openSession(app, key);
    await call(app, `/api/v1/api-keys/${created.body.id}`, { method: 'DELETE', headers: admin });
    const [row] = await db.query<{ closed_at: Date | null }>("SELECT closed_at FROM mcp_sessions WHERE principal = 'api_key:' || $1", [created.body.id]);
    assert.ok(row.closed_at, 'session closed');
    assert.equal((await listTools(app, session, key)).status, 401);

    const erin = bearer(await token({ sub: 'erin' }));
    const erinSession = await openSession(app, erin);
    const users = await call(app, '/api/v1/users', { headers: admin });
    assert.equal(users.status, 200);
    const erinRow = users.body.items.find((u) => u.subject === 'erin');
    assert.ok(erinRow);
    const promoted = await call(app, `/api/v1/users/${erinRow.id}`, { method: 'PATCH', headers: admin, body: { roles: ['admin'] } });
    assert.equal(promoted.status, 200);
    assert.deepEqual((await call(app, '/api/v1/me', { headers: erin })).body.roles, ['admin'], 'role change applies at once');
    const badPatch = await call(app, `/api/v1/users/${erinRow.id}`, { method: 'PATCH', headers: admin, body: { disabled: 'yes' } });
    assert.equal(badPatch.status, 400);
    assert.match(badPatch.body.error.message, /^disabled: expected true or false/);
    const disabled = await call(app, `/api/v1/users/${erinRow.id}`, { method: 'PATCH', headers: admin, body: { disabled: true } });
    assert.equal(disabled.status, 200);
    assert.equal((await call(app, '/api/v1/me', { headers: erin })).status, 403);
    assert.equal((await listTools(app, erinSession, erin)).status, 403);
    const [closed] = await db.query<{ closed_at: Date | null }>('SELECT closed_at FROM mcp_sessions WHERE principal = $1', [`user:${erinRow.id}`]);
    assert.ok(closed.closed_at);
    assert.equal((await call(app, '/api/v1/users/00000000-0000-4000-8000-000000000000', { method: 'PATCH', headers: admin, body: {} })).status, 404);
  });

  it('serves both SDK clients with a key, and writes no credential into any log line', async () => {
    const created = await call(app, '/api/v1/api-keys', { headers: admin, body: { name: 'sdk' } });
    const key = created.body.key;
    const legacy = new LegacyClient({ name: 'legacy', version: '1' });
    await legacy.connect(new LegacyTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${key}` } } }));
    assert.ok((await legacy.listTools()).tools.some((t) => t.name === 'everything__echo'));
    const echoed = await legacy.callTool({ name: 'everything__echo', arguments: { message: 'hi' } });
    assert.match(JSON.stringify(echoed.content), /hi/);
    await legacy.close();

    const modern = new Client({ name: 'modern', version: '1' });
    await modern.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: { 'x-api-key': key } } }));
    assert.ok((await modern.listTools()).tools.some((t) => t.name === 'everything__echo'));
    await modern.close();

    const t = await token();
    await call(app, '/api/v1/me', { headers: bearer(t) });
    await call(app, '/api/v1/me', { headers: bearer(`${t}x`) });
    await call(app, `/api/v1/me?access_token=${t}`);
    for (const secret of [key, t, STATIC_KEY, SECRET, key.slice(10)]) {
      assert.ok(!app.logs.raw.includes(secret), 'a credential reached the logs');
    }
  });
});

describe('bearer JWT against a JWKS, and oauth2 tokens for this resource', () => {
  let db: TestDatabase;
  let app: TestApp;
  let idp: LocalIssuer;
  let oauth: LocalIssuer;
  before(async () => {
    db = await createTestDatabase();
    idp = await LocalIssuer.start();
    oauth = await LocalIssuer.start();
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'bearer,oauth2',
      MCP_JWT_JWKS_URL: idp.jwksUrl,
      MCP_JWT_ISSUER: idp.url,
      MCP_JWT_AUDIENCE: 'gatehouse',
      MCP_JWT_ROLES_CLAIM: 'realm_access.roles',
      MCP_OAUTH_ISSUER: oauth.url,
      PUBLIC_URL: 'https://mcp.example.com',
    });
  });
  after(async () => {
    await app.shutdown('test done');
    await Promise.all([idp.close(), oauth.close()]);
    await db.drop();
  });

  it('verifies RS256 tokens, caches the key set, and refetches it for a new kid', async () => {
    const me = await call(app, '/api/v1/me', { headers: bearer(await idp.sign({ sub: 'u1', aud: 'gatehouse', realm_access: { roles: ['admin'] } })) });
    assert.equal(me.status, 200, JSON.stringify(me.body));
    assert.deepEqual(me.body.roles, ['member', 'admin']);
    const fetches = idp.jwksFetches;
    for (let i = 0; i < 5; i++) assert.equal((await call(app, '/api/v1/me', { headers: bearer(await idp.sign({ sub: `u${i}`, aud: 'gatehouse' })) })).status, 200);
    assert.equal(idp.jwksFetches, fetches, 'the key set is cached');

    // Key rotation: a token signed with a key published after the set was cached is accepted
    // once the refetch cooldown (5 s since the last fetch) allows a refetch.
    await idp.addKey('es-2', 'ES256');
    await new Promise((r) => setTimeout(r, JWKS_REFETCH_COOLDOWN_MS + 200));
    const rotated = await call(app, '/api/v1/me', { headers: bearer(await idp.sign({ sub: 'u9', aud: 'gatehouse' }, { kid: 'es-2' })) });
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(idp.jwksFetches, fetches + 1);

    // An unknown kid is refused, and does not make the gateway hammer the JWKS (cooldown).
    await idp.addKey('ghost', 'RS256', false);
    for (let i = 0; i < 3; i++) {
      const res = await call(app, '/api/v1/me', { headers: bearer(await idp.sign({ sub: 'g', aud: 'gatehouse' }, { kid: 'ghost' })) });
      assert.equal(res.status, 401);
      assert.match(res.body.error.message, /key this gateway does not know/);
    }
    assert.equal(idp.jwksFetches, fetches + 1, 'no refetch within the cooldown, however many unknown kids arrive');
  });

  it('refuses HS256 tokens signed with the public key (key confusion), alg none, and foreign issuers', async () => {
    const pem = await idp.publicPem('rs-1');
    const confused = await hsToken(pem, { sub: 'mallory', aud: 'gatehouse' }, { issuer: idp.url });
    const res = await call(app, '/api/v1/me', { headers: bearer(confused) });
    assert.equal(res.status, 401);
    assert.match(res.body.error.message, /algorithm/);
    assert.equal((await call(app, '/api/v1/me', { headers: bearer(unsignedToken({ sub: 'm', aud: 'gatehouse', iss: idp.url })) })).status, 401);
    const stranger = await LocalIssuer.start();
    try {
      const foreign = await call(app, '/api/v1/me', { headers: bearer(await stranger.sign({ sub: 'x', aud: 'gatehouse' })) });
      assert.equal(foreign.status, 401);
    } finally {
      await stranger.close();
    }
  });

  it('accepts oauth2 tokens whose audience is this resource (found by discovery), and nothing else', async () => {
    // The admin API is its own resource, PUBLIC_URL/api (creds-audience.test.ts covers /mcp).
    const good = await call(app, '/api/v1/me', { headers: bearer(await oauth.sign({ sub: 'o1', aud: 'https://mcp.example.com/api', scope: 'mcp' })) });
    assert.equal(good.status, 200, JSON.stringify(good.body));
    assert.equal(good.body.method, 'oauth2');
    assert.deepEqual(good.body.scopes, ['mcp']);
    const several = await call(app, '/api/v1/me', { headers: bearer(await oauth.sign({ sub: 'o1', aud: ['https://mcp.example.com/mcp/github', 'https://mcp.example.com/api'] })) });
    assert.equal(several.status, 200, 'one of several audiences is this resource');
    for (const aud of ['https://other.example.com/mcp', 'https://mcp.example.com/mcp/a/b', 'gatehouse']) {
      const res = await call(app, '/api/v1/me', { headers: bearer(await oauth.sign({ sub: 'o1', aud })) });
      assert.equal(res.status, 401, aud);
      assert.match(res.body.error.message, /audience/);
    }
    const prm = await call(app, '/.well-known/oauth-protected-resource/mcp');
    assert.deepEqual(prm.body.authorization_servers, [oauth.url]);
  });
});

describe('trusted_header and optional authentication', () => {
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await db.drop();
  });

  it('believes identity headers only from AUTH_TRUSTED_PROXIES', async () => {
    const headers = { 'x-forwarded-user': 'frank', 'x-forwarded-email': 'frank@example.com', 'x-forwarded-groups': 'eng, sre' };
    const trusted = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'trusted_header', AUTH_TRUSTED_PROXIES: '127.0.0.1/32,::1' });
    try {
      const me = await call(trusted, '/api/v1/me', { headers });
      assert.equal(me.status, 200);
      assert.equal(me.body.method, 'trusted_header');
      assert.deepEqual(me.body.groups, ['eng', 'sre']);
    } finally {
      await trusted.shutdown('test done');
    }
    const untrusted = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'trusted_header', AUTH_TRUSTED_PROXIES: '10.0.0.0/8' });
    try {
      const spoofed = await call(untrusted, '/api/v1/me', { headers });
      assert.equal(spoofed.status, 401, 'a spoofed header from an untrusted address is ignored');
    } finally {
      await untrusted.shutdown('test done');
    }
  });

  it('with none beside api_key, admits requests without credentials to /mcp only; REQUIRE_FOR_SESSION=true refuses initialize', async () => {
    const open = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'none,api_key' });
    try {
      // As a load balancer would: send traffic once the replica says it is ready (a loaded CI
      // machine can still be finishing start-up here; /mcp then answers 503 with Retry-After).
      await eventually('the replica is ready', async () => ((await fetch(`${open.url}/readyz`)).status === 200 ? true : undefined), 20_000);
      assert.equal((await call(open, '/mcp', { headers: MCP_HEADERS, body: initialize })).status, 200);
      assert.equal((await call(open, '/api/v1/servers')).status, 401, 'the admin API still needs a key');
      assert.equal((await call(open, '/api/v1/me')).status, 401);
    } finally {
      await open.shutdown('test done');
    }
    // API keys only: initialize needs credentials by default (MCP_AUTH_REQUIRE), and the challenge
    // does not send clients into OAuth discovery (no resource_metadata); the message names the header.
    const strict = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'api_key' });
    try {
      const res = await call(strict, '/mcp', { headers: MCP_HEADERS, body: initialize });
      assert.equal(res.status, 401);
      assert.doesNotMatch(res.headers.get('www-authenticate') ?? '', /resource_metadata/);
      assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm="gatehouse"/);
      assert.match(JSON.stringify(res.body), /X-API-Key header/);
      // A JWT or a token that is no key at all is refused as what it is, never as "the API key is not valid".
      const jwt = ['eyJhbGciOiJFUzI1NiJ9', Buffer.from(JSON.stringify({ sub: 'x', iss: 'https://idp.example' })).toString('base64url'), 'c2ln'].join('.');
      for (const [what, token, kind] of [
        ['a JWT', jwt, /the bearer token is a JWT, and JWTs are not accepted here/],
        ['garbage', 'hello-i-am-not-a-key', /neither a Gatehouse API key nor a JWT/],
      ] as const) {
        const refused = await call(strict, '/mcp', { headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: initialize });
        assert.equal(refused.status, 401, what);
        const text = JSON.stringify(refused.body);
        assert.match(text, kind, what);
        assert.doesNotMatch(text, /API key is not valid/, what);
        assert.match(text, /X-API-Key header/, `${what}: names the header to send`);
        const challenge = refused.headers.get('www-authenticate') ?? '';
        assert.doesNotMatch(challenge, /resource_metadata/, `${what}: no OAuth discovery`);
        assert.match(challenge, /error="invalid_token"/);
      }
    } finally {
      await strict.shutdown('test done');
    }
    // An API key sent where only JWTs are accepted is refused as an API key, with what to send instead.
    const jwtOnly = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_SECRET: 'a-shared-secret-of-at-least-32-characters!!' });
    try {
      const refused = await call(jwtOnly, '/mcp', { headers: { ...MCP_HEADERS, authorization: `Bearer gatehouse_${'A'.repeat(43)}` }, body: initialize });
      assert.equal(refused.status, 401);
      assert.match(JSON.stringify(refused.body), /the bearer token is an API key, and API keys are not accepted here.*JWT access token as Authorization: Bearer/);
    } finally {
      await jwtOnly.shutdown('test done');
    }
  });

  it('bounds sessions opened without credentials per client address (HTTP_MAX_SESSIONS_PER_ADDRESS), apart from authenticated ones', async () => {
    const key = 'bounded-bootstrap-key-0123456789';
    const own = await createTestDatabase(); // no sessions from earlier tests
    const bounded = await startTestApp(own.url, { MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: key, MCP_SESSION_AUTH_REQUIRE_FOR_SESSION: 'false', HTTP_MAX_CONCURRENT_SESSIONS: '1', HTTP_MAX_SESSIONS_PER_ADDRESS: '10' });
    try {
      for (let i = 0; i < 10; i++) assert.equal((await call(bounded, '/mcp', { headers: MCP_HEADERS, body: initialize })).status, 200, `pending session ${i + 1}`);
      const refused = await call(bounded, '/mcp', { headers: MCP_HEADERS, body: initialize });
      assert.equal(refused.status, 429);
      assert.match(refused.body.error.message, /opened without credentials from this address \(10, HTTP_MAX_SESSIONS_PER_ADDRESS\)/);
      assert.equal((await call(bounded, '/mcp', { headers: { ...MCP_HEADERS, 'x-api-key': key }, body: initialize })).status, 200, 'an authenticated client is not affected');
    } finally {
      await bounded.shutdown('test done');
      await own.drop();
    }
  });
});
