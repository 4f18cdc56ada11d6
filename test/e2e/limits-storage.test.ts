import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';

const SECRET = 'limits-storage-secret-that-is-long-enough-0123';

interface Reply {
  status: number;
  body: { error?: { code: string; message: string; details?: { setting: string; limit: number } }; id?: string };
}

describe('what one user can make Gatehouse store: secrets and API keys per user', () => {
  let db: TestDatabase;
  let app: TestApp;
  let admin: Record<string, string>;
  let alice: Record<string, string>;
  let bob: Record<string, string>;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_SECRET: SECRET, GATEHOUSE_MAX_SECRETS_PER_USER: '2', GATEHOUSE_MAX_API_KEYS_PER_USER: '2' });
    admin = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'root', roles: ['admin'] })}` };
    alice = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'alice' })}` };
    bob = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'bob' })}` };
    for (const name of ['one', 'two']) {
      const res = await call('/api/v1/servers', 'POST', admin, { name, transport: 'stdio', command: process.execPath, args: ['-e', '0'], enabled: false });
      assert.equal(res.status, 201);
    }
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  async function call(path: string, method: string, headers: Record<string, string>, body?: unknown): Promise<Reply> {
    const res = await fetch(`${app.url}${path}`, {
      method,
      headers: { ...headers, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : {}) as Reply['body'] };
  }
  const put = (who: Record<string, string>, server: string, name: string) => call(`/api/v1/me/secrets/${server}/${name}`, 'PUT', who, { value: 'v' });

  it('refuses a secret beyond GATEHOUSE_MAX_SECRETS_PER_USER (409 naming it); replacing one and other users are unaffected', async () => {
    assert.equal((await put(alice, 'one', 'A')).status, 204);
    assert.equal((await put(alice, 'two', 'B')).status, 204);
    const over = await put(alice, 'two', 'C');
    assert.equal(over.status, 409);
    assert.equal(over.body.error?.code, 'conflict');
    assert.match(over.body.error?.message ?? '', /GATEHOUSE_MAX_SECRETS_PER_USER=2/);
    assert.equal(over.body.error?.details?.setting, 'GATEHOUSE_MAX_SECRETS_PER_USER');
    assert.equal((await put(alice, 'one', 'A')).status, 204, 'replacing an existing secret is not a new one');
    assert.equal((await put(bob, 'one', 'A')).status, 204, 'another user has their own allowance');
    assert.equal((await call('/api/v1/me/secrets/one/A', 'DELETE', alice)).status, 204);
    assert.equal((await put(alice, 'two', 'C')).status, 204, 'deleting one frees a place');
  });

  it('refuses an API key beyond GATEHOUSE_MAX_API_KEYS_PER_USER (409 naming it); revoking one frees a place', async () => {
    const create = (who: Record<string, string>, name: string) => call('/api/v1/api-keys', 'POST', who, { name, role: 'member' });
    const first = await create(alice, 'k1');
    assert.equal(first.status, 201);
    assert.equal((await create(alice, 'k2')).status, 201);
    const over = await create(alice, 'k3');
    assert.equal(over.status, 409);
    assert.match(over.body.error?.message ?? '', /GATEHOUSE_MAX_API_KEYS_PER_USER=2/);
    assert.equal((await create(bob, 'k1')).status, 201);
    assert.equal((await call(`/api/v1/api-keys/${first.body.id}`, 'DELETE', alice)).status, 204);
    assert.equal((await create(alice, 'k3')).status, 201);
  });
});
