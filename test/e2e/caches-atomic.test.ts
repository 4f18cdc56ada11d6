import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ChangeBusService } from '../../src/database/change-bus.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { eventually } from '../support/upstreams.js';

const JWT_SECRET = 'caches-atomic-test-jwt-secret-0123456789';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;

/*
 * Fault 4 of issue 9: a write and its change-bus event must commit together. The bus's publish
 * is made to fail after it has run (the bus is an injectable side effect; everything else is
 * real: PostgreSQL, HTTP, the services). Before the fix a write committed, then published, and
 * a failing publish answered 500 for a change that had committed — and no replica heard of it.
 * Now the publish runs inside the writing transaction: a failure rolls the change back.
 */
describe('writes and their change events commit together', () => {
  let db: TestDatabase;
  let app: TestApp;
  let bus: ChangeBusService;
  const admin = { 'x-api-key': ADMIN_KEY, 'content-type': 'application/json' };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY });
    bus = app.app.get(ChangeBusService);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  /** Runs `fn` while every publish on `topic` fails after doing its work. */
  async function withFailingPublish<T>(topic: string, fn: () => Promise<T>): Promise<T> {
    const original = bus.publish.bind(bus);
    bus.publish = async (t, data, tx) => {
      await original(t, data, tx);
      if ((typeof t === 'string' ? t : t.name) === topic) throw new Error('injected: the notification could not be sent');
    };
    try {
      return await fn();
    } finally {
      bus.publish = original;
    }
  }

  it('a user patch, a key revocation and a secret write either commit with their event or not at all', async () => {
    const bearer = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: 'atomic-user' })}` };
    assert.equal((await fetch(`${app.url}/api/v1/me`, { headers: bearer })).status, 200);
    const [user] = await db.query<{ id: string }>("SELECT id FROM users WHERE subject = 'atomic-user'");
    const created = await fetch(`${app.url}/api/v1/api-keys`, { method: 'POST', headers: { ...bearer, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'k' }) });
    assert.equal(created.status, 201);
    const { id: keyId, key } = (await created.json()) as { id: string; key: string };
    const server = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: admin,
      body: JSON.stringify({ name: 'vault', transport: 'stdio', command: process.execPath, args: ['-e', ''], enabled: false }),
    });
    assert.equal(server.status, 201);

    const patch = await withFailingPublish('users.changed', () =>
      fetch(`${app.url}/api/v1/users/${user.id}`, { method: 'PATCH', headers: admin, body: JSON.stringify({ disabled: true }) }),
    );
    const [{ disabled }] = await db.query<{ disabled: boolean }>('SELECT disabled FROM users WHERE id = $1', [user.id]);
    assert.equal(patch.status, 500);
    assert.equal(disabled, false, 'a 500 for the patch means it did not commit');

    const revoke = await withFailingPublish('api_keys.changed', () => fetch(`${app.url}/api/v1/api-keys/${keyId}`, { method: 'DELETE', headers: bearer }));
    const [{ revoked_at }] = await db.query<{ revoked_at: Date | null }>('SELECT revoked_at FROM api_keys WHERE id = $1', [keyId]);
    assert.equal(revoke.status, 500);
    assert.equal(revoked_at, null, 'a 500 for the revocation means it did not commit');
    assert.equal((await fetch(`${app.url}/api/v1/me`, { headers: { 'x-api-key': key } })).status, 200, 'and the key still works');

    const put = await withFailingPublish('secrets.changed', () =>
      fetch(`${app.url}/api/v1/servers/vault/secrets/TOKEN`, { method: 'PUT', headers: admin, body: JSON.stringify({ value: 'v' }) }),
    );
    assert.equal(put.status, 500);
    assert.equal((await db.query('SELECT 1 FROM secrets')).length, 0, 'a 500 for the secret means it was not stored');

    // With a working bus, each commits and its event is heard (this replica listens too).
    const heard: string[] = [];
    const offs = ['users.changed', 'api_keys.changed', 'secrets.changed'].map((t) => bus.subscribe(t, (e) => heard.push(e.topic)));
    assert.equal((await fetch(`${app.url}/api/v1/users/${user.id}`, { method: 'PATCH', headers: admin, body: JSON.stringify({ roles: ['member', 'ops'] }) })).status, 200);
    assert.equal((await fetch(`${app.url}/api/v1/api-keys/${keyId}`, { method: 'DELETE', headers: bearer })).status, 204);
    assert.equal((await fetch(`${app.url}/api/v1/servers/vault/secrets/TOKEN`, { method: 'PUT', headers: admin, body: JSON.stringify({ value: 'v' }) })).status, 204);
    assert.equal((await fetch(`${app.url}/api/v1/me`, { headers: { 'x-api-key': key } })).status, 401, 'the revoked key is refused at once');
    await eventually('the three events', () => (heard.length >= 3 ? true : undefined), 5_000);
    for (const off of offs) off();
    assert.deepEqual(heard.sort(), ['api_keys.changed', 'secrets.changed', 'users.changed']);
  });

  it("disabling a user ends their keys' sessions and refuses the keys (users asks api-keys, no SQL on its table)", async () => {
    const bearer = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: 'key-owner' })}`, 'content-type': 'application/json' };
    const created = await fetch(`${app.url}/api/v1/api-keys`, { method: 'POST', headers: bearer, body: JSON.stringify({ name: 'bot' }) });
    const { id: keyId, key } = (await created.json()) as { id: string; key: string };
    const init = await fetch(`${app.url}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'x-api-key': key },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'c', version: '1' } } }),
    });
    assert.equal(init.status, 200);
    await init.text();
    assert.equal((await fetch(`${app.url}/api/v1/me`, { headers: { 'x-api-key': key } })).status, 200, 'the key works (and is cached)');
    const [owner] = await db.query<{ id: string }>("SELECT id FROM users WHERE subject = 'key-owner'");
    const patched = await fetch(`${app.url}/api/v1/users/${owner.id}`, { method: 'PATCH', headers: admin, body: JSON.stringify({ disabled: true }) });
    assert.equal(patched.status, 200);
    const [session] = await db.query<{ closed_at: Date | null }>('SELECT closed_at FROM mcp_sessions WHERE principal = $1', [`api_key:${keyId}`]);
    assert.ok(session.closed_at, "the key's session ended");
    const refused = await fetch(`${app.url}/api/v1/me`, { headers: { 'x-api-key': key } });
    assert.equal(refused.status, 401);
    assert.match(await refused.text(), /owner is disabled/);
  });
});
