import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { QueryRunner } from 'typeorm';
import { SplitServersWrite1795400600000 } from '../../migrations/1795400600000-SplitServersWrite.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';

const SECRET = 'browser-permissions-jwt-secret-0123456789';
const STATIC_KEY = 'browser-permissions-static-key-0123456789';

interface Reply {
  status: number;
  headers: Headers;
  body: { key?: string; id?: string; scopes?: string[]; userId?: string; error?: { code: string; message: string } };
}

async function call(app: TestApp, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Reply> {
  const res = await fetch(`${app.url}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: (text ? JSON.parse(text) : {}) as Reply['body'] };
}

/** A disabled stdio server: registering it starts nothing. */
const parked = (name: string) => ({ name, transport: 'stdio', command: process.execPath, args: ['-e', ''], enabled: false });

describe('servers:write is its own permission, split from admin:write', () => {
  let db: TestDatabase;
  let app: TestApp;
  const env = { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: SECRET, MCP_API_KEYS: STATIC_KEY };
  const admin = { 'x-api-key': STATIC_KEY };
  const mint = async (name: string, scopes?: string[]) => {
    const res = await call(app, 'POST', '/api/v1/api-keys', admin, { name, role: 'admin', ...(scopes ? { scopes } : {}) });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return { 'x-api-key': res.body.key!, id: res.body.id!, scopes: res.body.scopes! };
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, env);
    assert.equal((await call(app, 'POST', '/api/v1/servers', admin, parked('existing'))).status, 201);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('admin:write alone can no longer register, change, enable, disable or delete servers, nor set their shared secrets', async () => {
    const { id: _id, scopes: _s, ...keyA } = await mint('admin-writer', ['mcp', 'admin:read', 'admin:write']);
    const refused: [string, string, unknown?][] = [
      ['POST', '/api/v1/servers', parked('sneaky')],
      ['PATCH', '/api/v1/servers/existing', { command: '/bin/sh' }],
      ['POST', '/api/v1/servers/existing/enable'],
      ['POST', '/api/v1/servers/existing/disable'],
      ['DELETE', '/api/v1/servers/existing'],
      ['PUT', '/api/v1/servers/existing/secrets/TOKEN', { value: 'injected-into-the-process' }],
      ['DELETE', '/api/v1/servers/existing/secrets/TOKEN'],
    ];
    for (const [method, path, body] of refused) {
      const res = await call(app, method, path, keyA, body);
      assert.equal(res.status, 403, `${method} ${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.error?.code, 'forbidden');
      assert.match(res.body.error?.message ?? '', /"servers:write" permission/);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", error_description="requires servers:write"/);
    }
    // Reading servers and the other admin writes still work.
    assert.equal((await call(app, 'GET', '/api/v1/servers/existing', keyA)).status, 200);
    const policy = await call(app, 'POST', '/api/v1/policies', keyA, { subject: { role: 'member' }, effect: 'deny', operations: ['tools/call'], targets: ['existing__*'] });
    assert.equal(policy.status, 201, JSON.stringify(policy.body));
  });

  it('a key scoped servers:write manages servers without the other admin writes; admin keys hold it by default', async () => {
    const { id: _id, scopes: _s, ...deployer } = await mint('deployer', ['admin:read', 'servers:write']);
    assert.equal((await call(app, 'POST', '/api/v1/servers', deployer, parked('deployed'))).status, 201);
    assert.equal((await call(app, 'PATCH', '/api/v1/servers/deployed', deployer, { description: 'by the deploy bot' })).status, 200);
    assert.equal((await call(app, 'PUT', '/api/v1/servers/deployed/secrets/TOKEN', deployer, { value: 'shared-value' })).status, 204);
    assert.equal((await call(app, 'DELETE', '/api/v1/servers/deployed', deployer)).status, 204);
    const policy = await call(app, 'POST', '/api/v1/policies', deployer, { subject: { role: 'member' }, effect: 'allow', operations: ['tools/call'], targets: ['*'] });
    assert.equal(policy.status, 403, 'servers:write is not admin:write');
    const full = await mint('full-admin');
    assert.deepEqual(full.scopes, ['mcp', 'admin:read', 'admin:write', 'servers:write']);
  });

  it('what lacks servers:write cannot obtain it: no admin key minted, no admin role granted, token scopes respected', async () => {
    const { id: _id, scopes: _s, ...keyA } = await mint('admin-writer-2', ['mcp', 'admin:read', 'admin:write']);
    const adminKey = await call(app, 'POST', '/api/v1/api-keys', keyA, { name: 'escalate', role: 'admin' });
    assert.equal(adminKey.status, 403, JSON.stringify(adminKey.body));
    assert.match(adminKey.body.error?.message ?? '', /servers:write/);
    const wider = await call(app, 'POST', '/api/v1/api-keys', keyA, { name: 'escalate', role: 'admin', scopes: ['servers:write'] });
    assert.equal(wider.status, 403);

    // A user seen once through a JWT; granting them "admin" would hand out servers:write.
    const bob = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'bob', name: 'Bob' })}` };
    const me = await call(app, 'GET', '/api/v1/me', bob);
    assert.equal(me.status, 200, JSON.stringify(me.body));
    const grant = await call(app, 'PATCH', `/api/v1/users/${me.body.userId}`, keyA, { roles: ['admin'] });
    assert.equal(grant.status, 403, JSON.stringify(grant.body));
    assert.match(grant.body.error?.message ?? '', /roles: granting "admin" requires the "servers:write" permission/);
    assert.equal((await call(app, 'PATCH', `/api/v1/users/${me.body.userId}`, keyA, { disabled: false })).status, 200, 'other user changes still work');
    assert.equal((await call(app, 'PATCH', `/api/v1/users/${me.body.userId}`, admin, { roles: ['admin'] })).status, 200);

    // An admin's token scoped by the IdP to admin:write only is limited to it.
    const scoped = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'bob', scope: 'admin:read admin:write' })}` };
    assert.equal((await call(app, 'POST', '/api/v1/servers', scoped, parked('via-token'))).status, 403);
    const unscoped = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'bob' })}` };
    assert.equal((await call(app, 'POST', '/api/v1/servers', unscoped, parked('via-token'))).status, 201);
  });

  it('keys stored before the split keep managing servers: the migration adds servers:write to keys scoped admin:write', async () => {
    const old = await mint('pre-split', ['mcp', 'admin:read', 'admin:write']);
    const member = await call(app, 'POST', '/api/v1/api-keys', admin, { name: 'member-bot', role: 'member' });
    const runner = { query: (sql: string) => db.query(sql) } as unknown as QueryRunner;
    await new SplitServersWrite1795400600000().up(runner);
    await new SplitServersWrite1795400600000().up(runner);
    const rows = await db.query<{ id: string; scopes: string[] }>('SELECT id, scopes FROM api_keys WHERE id = ANY($1)', [[old.id, member.body.id]]);
    const byId = new Map(rows.map((r) => [r.id, r.scopes]));
    assert.deepEqual(byId.get(old.id), ['mcp', 'admin:read', 'admin:write', 'servers:write'], 'added once, however often it runs');
    assert.deepEqual(byId.get(member.body.id!), ['mcp'], 'keys without admin:write are left alone');
    // A replica that loads the key now lets it register servers.
    const fresh = await startTestApp(db.url, env);
    try {
      const { id: _id, scopes: _s, ...key } = old;
      assert.equal((await call(fresh, 'POST', '/api/v1/servers', key, parked('pre-split-server'))).status, 201);
    } finally {
      await fresh.shutdown('test done');
    }
    await new SplitServersWrite1795400600000().down(runner);
    assert.deepEqual((await db.query<{ scopes: string[] }>('SELECT scopes FROM api_keys WHERE id = $1', [old.id]))[0].scopes, ['mcp', 'admin:read', 'admin:write']);
  });
});
