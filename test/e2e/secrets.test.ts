import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { findLeaks } from '../support/leaks.js';
import { TEST_ENCRYPTION_KEYS, freePort } from '../support/process.js';
import { EVERYTHING, eventually, processesWith } from '../support/upstreams.js';

const JWT_SECRET = 'secrets-test-jwt-secret-0123456789abcdef';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;
const unique = (who: string) => `${who}-${randomBytes(12).toString('hex')}`;
/** Every secret value this file sets: none may appear in any log line, response or error. */
const VALUES = { alice: unique('alice'), bob: unique('bob'), shared: unique('shared'), greeting: unique('greeting'), header: unique('hdr') };

interface Reply {
  status: number;
  text: string;
  json: { error?: { code: string; message: string }; items?: { server: string; name: string; updatedAt: string }[] };
}

describe('encrypted per-user secrets, injected into upstream calls', () => {
  let db: TestDatabase;
  let app: TestApp;
  let echo: ChildProcess;
  /** For the leak check: admin API bodies, tool error results, and log output of every process. */
  const apiBodies: string[] = [];
  const toolErrors: string[] = [];
  const logs: string[] = [];
  const admin = { 'x-api-key': ADMIN_KEY };
  const env = { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY, LOG_LEVEL: 'debug' };
  const token = (sub: string, email = `${sub}@example.com`) => hsToken(JWT_SECRET, { sub, email });
  const users: Record<string, Record<string, string>> = {};

  async function call(path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}, on: TestApp = app): Promise<Reply> {
    const res = await fetch(`${on.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    apiBodies.push(text);
    return { status: res.status, text, json: (text ? JSON.parse(text) : {}) as Reply['json'] };
  }

  async function tool(who: Record<string, string>, name: string, args: Record<string, unknown> = {}, on: TestApp = app): Promise<{ text: string; isError: boolean }> {
    const client = new LegacyClient({ name: 'secrets-test', version: '1' });
    await client.connect(new LegacyTransport(new URL(`${on.url}/mcp`), { requestInit: { headers: who } }));
    try {
      const result = await client.callTool({ name, arguments: args });
      const text = (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
      if (result.isError === true) toolErrors.push(text);
      return { text, isError: result.isError === true };
    } finally {
      await client.close();
    }
  }

  /** A replica started on the same database, once it has connected to `vault`. */
  const replicaWith = async (extra: Record<string, string> = {}): Promise<TestApp> => {
    const replica = await startTestApp(db.url, { ...env, ...extra });
    await eventually('vault connected on the replica', async () =>
      (JSON.parse((await call('/api/v1/servers/vault', { headers: admin }, replica)).text) as { status: { state: string } }).status.state === 'connected' ? true : undefined,
    );
    return replica;
  };

  const envOf = async (who: Record<string, string>, on?: TestApp) => {
    const r = await tool(who, 'vault__get-env', {}, on);
    return { ...r, env: r.isError ? {} : (JSON.parse(r.text) as Record<string, string>) };
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, env);
    for (const who of ['alice', 'bob', 'carol']) users[who] = { authorization: `Bearer ${await token(who)}` };
    const port = await freePort();
    echo = spawn(process.execPath, [resolve('bench/echo-upstream.mjs')], { env: { ...process.env, PORT: String(port), HEADER_TOOL: '1' }, stdio: 'ignore' });
    const servers = [
      { name: 'vault', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { API_TOKEN: '${secret:API_TOKEN}', CALLER: '${user:id}', CALLER_EMAIL: '${user:email}' } },
      { name: 'injector', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], inject: { message: '${secret:GREETING}' } },
      { name: 'remote', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp`, headers: { Authorization: 'Bearer ${secret:REMOTE_TOKEN}' } },
    ];
    await eventually('echo upstream', () => fetch(`http://127.0.0.1:${port}/mcp`, { method: 'GET' }).then(() => true, () => undefined));
    for (const server of servers) assert.equal((await call('/api/v1/servers', { method: 'POST', headers: admin, body: server })).status, 201);
    for (const { name } of servers) {
      await eventually(`${name} connected`, async () => ((JSON.parse((await call(`/api/v1/servers/${name}`, { headers: admin })).text) as { status: { state: string } }).status.state === 'connected' ? true : undefined));
    }
  });

  after(async () => {
    echo.kill();
    await app.shutdown('test done');
    await db.drop();
  });

  it('refuses bad secrets with a field-named 400, unknown servers with 404, and anonymous callers with 401', async () => {
    const put = (path: string, body: unknown, headers = users.alice) => call(path, { method: 'PUT', headers, body });
    let r = await put('/api/v1/me/secrets/nope/API_TOKEN', { value: 'x' });
    assert.equal(r.status, 404);
    assert.match(r.json.error!.message, /server "nope" does not exist/);
    r = await put('/api/v1/me/secrets/vault/9bad-name', { value: 'x' });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /^name: expected a name matching/);
    r = await put('/api/v1/me/secrets/vault/API_TOKEN', { value: 'x'.repeat(64 * 1024 + 1) });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /^value: expected at most 65536 bytes/);
    r = await put('/api/v1/me/secrets/vault/API_TOKEN', { secret: 'x' });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /value: /);
    assert.equal((await put('/api/v1/me/secrets/vault/API_TOKEN', { value: 'x' }, {})).status, 401);
    assert.equal((await put('/api/v1/servers/vault/secrets/API_TOKEN', { value: 'x' })).status, 403, 'members cannot set shared secrets');
    assert.equal((await db.query('SELECT 1 FROM secrets')).length, 0, 'nothing half-written');
  });

  it('gives each user their own value, names the missing secret for others, and stores no plaintext', async () => {
    assert.equal((await call('/api/v1/me/secrets/vault/API_TOKEN', { method: 'PUT', headers: users.alice, body: { value: VALUES.alice } })).status, 204);
    assert.equal((await call('/api/v1/me/secrets/vault/API_TOKEN', { method: 'PUT', headers: users.bob, body: { value: VALUES.bob } })).status, 204);

    const alice = await envOf(users.alice);
    assert.equal(alice.isError, false, alice.text);
    assert.equal(alice.env.API_TOKEN, VALUES.alice);
    assert.equal(alice.env.CALLER_EMAIL, 'alice@example.com');
    const [aliceRow] = await db.query<{ id: string }>("SELECT id FROM users WHERE subject = 'alice'");
    assert.equal(alice.env.CALLER, aliceRow.id);
    const bob = await envOf(users.bob);
    assert.equal(bob.env.API_TOKEN, VALUES.bob);
    assert.ok(!bob.text.includes(VALUES.alice) && !alice.text.includes(VALUES.bob), 'each sees only their own');
    assert.equal(processesWith(VALUES.alice).length, 1, "alice's own process");

    const carol = await envOf(users.carol);
    assert.equal(carol.isError, true);
    assert.match(carol.text, /Secret "API_TOKEN" for server "vault" is not set/);
    assert.match(carol.text, /PUT http:\/\/localhost:\d+\/api\/v1\/me\/secrets\/vault\/API_TOKEN with the JSON body \{"value": "<your API_TOKEN>"\}/);

    const listed = await call('/api/v1/me/secrets', { headers: users.alice });
    assert.deepEqual(listed.json.items?.map(({ server, name }) => ({ server, name })), [{ server: 'vault', name: 'API_TOKEN' }]);
    assert.ok(!listed.text.includes(VALUES.alice));

    const rows = await db.query<{ ciphertext: Buffer; nonce: Buffer; key_id: string }>('SELECT * FROM secrets');
    assert.equal(rows.length, 2);
    for (const row of rows) {
      assert.equal(row.key_id, 'test-1');
      for (const v of Object.values(VALUES)) {
        assert.ok(!row.ciphertext.includes(Buffer.from(v)), 'no plaintext in the table');
        assert.ok(!row.ciphertext.toString('hex').includes(Buffer.from(v).toString('hex')));
      }
    }
    assert.ok(!JSON.stringify(await db.query('SELECT * FROM secrets')).includes(VALUES.alice));
  });

  it('falls back to the shared secret, retires a process whose secret changed, and lets the user value win', async () => {
    assert.equal((await call('/api/v1/servers/vault/secrets/API_TOKEN', { method: 'PUT', headers: admin, body: { value: VALUES.shared } })).status, 204);
    assert.equal((await envOf(users.carol)).env.API_TOKEN, VALUES.shared, 'carol gets the shared value');
    assert.equal((await envOf(users.alice)).env.API_TOKEN, VALUES.alice, "alice's own value wins");
    assert.equal((await call('/api/v1/me/secrets/vault/API_TOKEN', { method: 'DELETE', headers: users.alice })).status, 204);
    await eventually("alice's old process retired", () => (processesWith(VALUES.alice).length === 0 ? true : undefined), 10_000);
    assert.equal((await envOf(users.alice)).env.API_TOKEN, VALUES.shared, 'the next call uses the shared value');
    const shared = await call('/api/v1/servers/vault/secrets', { headers: admin });
    assert.deepEqual(shared.json.items?.map((i) => i.name), ['API_TOKEN']);
    assert.equal((await call('/api/v1/servers/vault/secrets/API_TOKEN', { method: 'DELETE', headers: admin })).status, 204);
    assert.equal((await envOf(users.alice)).isError, true, 'with neither, the call is refused before reaching the upstream');
  });

  it('injects arguments hidden from tools/list, and resolved headers into HTTP upstream requests', async () => {
    const client = new Client({ name: 'modern', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: users.bob } }));
    try {
      const { tools } = await client.listTools();
      const injected = tools.find((t) => t.name === 'injector__echo');
      assert.ok(injected);
      assert.ok(!('message' in ((injected.inputSchema.properties ?? {}) as object)), 'the injected argument is not in the schema');
      assert.ok(!(injected.inputSchema.required ?? []).includes('message'));
      const plain = tools.find((t) => t.name === 'vault__echo');
      assert.ok(plain && 'message' in ((plain.inputSchema.properties ?? {}) as object), 'other servers keep theirs');
    } finally {
      await client.close();
    }
    assert.match((await tool(users.bob, 'injector__echo')).text, /Secret "GREETING"/);
    await call('/api/v1/me/secrets/injector/GREETING', { method: 'PUT', headers: users.bob, body: { value: VALUES.greeting } });
    const echoed = await tool(users.bob, 'injector__echo', { message: 'spoofed by the client' });
    assert.match(echoed.text, new RegExp(VALUES.greeting), 'the injected value replaces what the client sent');

    await call('/api/v1/me/secrets/remote/REMOTE_TOKEN', { method: 'PUT', headers: users.bob, body: { value: VALUES.header } });
    assert.equal((await tool(users.bob, 'remote__header', { name: 'authorization' })).text, `Bearer ${VALUES.header}`);
    assert.match((await tool(users.alice, 'remote__header', { name: 'authorization' })).text, /Secret "REMOTE_TOKEN" for server "remote" is not set/);
    assert.equal((await tool(users.bob, 'remote__header', { name: 'x-api-key' })).text, '(none)', "the client's own credentials are not forwarded");
    const view = await call('/api/v1/servers/remote', { headers: admin });
    assert.match(view.text, /"Authorization":"Bearer \$\{secret:REMOTE_TOKEN\}"/, 'a placeholder is shown, it is not a secret');
  });

  it('rejects tampered, swapped and wrongly keyed rows with a clear error, and rotates keys with the CLI', async () => {
    await call('/api/v1/me/secrets/vault/API_TOKEN', { method: 'PUT', headers: users.alice, body: { value: VALUES.alice } });
    // A second replica reads the rows fresh from the database.
    const tamper = async (sql: string, check: (alice: string) => void) => {
      await db.query(sql);
      const replica = await replicaWith();
      try {
        check((await envOf(users.alice, replica)).text);
      } finally {
        logs.push(replica.logs.raw);
        await replica.shutdown('test done');
      }
    };
    const [original] = await db.query<{ id: string; ciphertext: Buffer; nonce: Buffer; owner: string }>(
      "SELECT s.id, s.ciphertext, s.nonce, s.owner FROM secrets s JOIN users u ON u.id::text = s.owner WHERE u.subject = 'alice' AND s.server = 'vault'",
    );
    await tamper(`UPDATE secrets SET ciphertext = set_byte(ciphertext, 0, (get_byte(ciphertext, 0) + 1) % 256) WHERE id = '${original.id}'`, (text) =>
      assert.match(text, /Secret "API_TOKEN" for server "vault" cannot be decrypted/),
    );
    const restore = () => db.query('UPDATE secrets SET ciphertext = $1, nonce = $2 WHERE id = $3', [original.ciphertext, original.nonce, original.id]);
    await restore();
    // Bob's sealed value copied into Alice's row: it was sealed for bob, so it does not open as alice's.
    await tamper(
      "UPDATE secrets a SET ciphertext = b.ciphertext, nonce = b.nonce FROM secrets b JOIN users u ON u.id::text = b.owner WHERE u.subject = 'bob' AND b.server = 'vault' AND b.name = 'API_TOKEN' AND a.id = '" +
        original.id +
        "'",
      (text) => assert.match(text, /cannot be decrypted/),
    );
    await restore();

    // Wrong key under the same id, then a ring that lacks the id altogether.
    const other = `test-1:${randomBytes(32).toString('base64')}`;
    const wrong = await replicaWith({ GATEHOUSE_ENCRYPTION_KEYS: other });
    try {
      assert.match((await envOf(users.alice, wrong)).text, /cannot be decrypted/);
    } finally {
      logs.push(wrong.logs.raw);
      await wrong.shutdown('test done');
    }
    const newKey = `k2:${randomBytes(32).toString('base64')}`;
    const unknown = await replicaWith({ GATEHOUSE_ENCRYPTION_KEYS: newKey });
    try {
      assert.match((await envOf(users.alice, unknown)).text, /key "test-1", which is not in the key ring/);
    } finally {
      logs.push(unknown.logs.raw);
      await unknown.shutdown('test done');
    }

    // Rotate to k2 (old key kept second), twice: the second run has nothing to do.
    const rotate = () =>
      new Promise<{ code: number | null; out: string }>((done) => {
        const child = spawn(process.execPath, ['dist/cli.js', 'secrets', 'rotate'], {
          env: { PATH: process.env.PATH, GATEHOUSE_ENV_FILE: '/nonexistent', DATABASE_URL: db.url, GATEHOUSE_ENCRYPTION_KEYS: `${newKey},${TEST_ENCRYPTION_KEYS}`, LOG_LEVEL: 'warn' },
        });
        let out = '';
        child.stdout.on('data', (c: Buffer) => (out += c.toString()));
        child.stderr.on('data', (c: Buffer) => (out += c.toString()));
        child.on('close', (code) => done({ code, out }));
      });
    const total = (await db.query('SELECT 1 FROM secrets')).length;
    const first = await rotate();
    logs.push(first.out);
    assert.equal(first.code, 0, first.out);
    assert.match(first.out, new RegExp(`rotated ${total}, already under "k2" 0, failed 0`));
    const second = await rotate();
    logs.push(second.out);
    assert.match(second.out, new RegExp(`rotated 0, already under "k2" ${total}, failed 0`));
    assert.deepEqual(await db.query('SELECT DISTINCT key_id FROM secrets'), [{ key_id: 'k2' }]);
    const rotated = await replicaWith({ GATEHOUSE_ENCRYPTION_KEYS: newKey });
    try {
      assert.equal((await envOf(users.alice, rotated)).env.API_TOKEN, VALUES.alice, 'readable with the new key alone');
    } finally {
      logs.push(rotated.logs.raw);
      await rotated.shutdown('test done');
    }
  });

  it('never shows a secret value in a log line, an API response or an error', () => {
    assert.ok(app.logs.lines.length > 50, 'the run logged, at debug level (upstream stderr included)');
    assert.ok(toolErrors.length >= 4 && apiBodies.length > 20, 'errors and responses were captured');
    // Every encoding (raw, JSON-, inspect-escaped, URL-encoded, base64), not only the raw value.
    assert.deepEqual(findLeaks(VALUES, { 'log output': [app.logs.raw, ...logs], 'an API response': apiBodies, 'an error result': toolErrors }), []);
  });
});

describe('the per-user connection pool', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('keeps at most GATEHOUSE_POOL_MAX per-user processes, evicting the least recently used, and reaps idle ones', async () => {
    const admin = { 'x-api-key': ADMIN_KEY };
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'bearer,api_key',
      MCP_JWT_SECRET: JWT_SECRET,
      MCP_API_KEYS: ADMIN_KEY,
      GATEHOUSE_POOL_MAX: '1',
      GATEHOUSE_POOL_IDLE_TTL: '4000',
    });
    const marker = `GH_POOL_${randomBytes(4).toString('hex')}`;
    const json = { 'content-type': 'application/json' };
    const created = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { ...json, ...admin },
      body: JSON.stringify({ name: 'pooled', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { WHO: '${user:id}', [marker]: '1' } }),
    });
    assert.equal(created.status, 201);
    await eventually('connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/pooled`, { headers: admin })).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
    const whoAmI = async (sub: string) => {
      const client = new LegacyClient({ name: 'pool-test', version: '1' });
      await client.connect(new LegacyTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub })}` } } }));
      try {
        const r = await client.callTool({ name: 'pooled__get-env', arguments: {} });
        return (JSON.parse((r.content as { text: string }[])[0].text) as Record<string, string>).WHO;
      } finally {
        await client.close();
      }
    };
    const dora = await whoAmI('dora');
    assert.ok(dora, 'dora got her own process');
    assert.equal(processesWith(marker).length, 2, 'the listing process and dora’s');
    const eve = await whoAmI('eve');
    assert.notEqual(eve, dora);
    assert.equal(processesWith(marker).length, 2, "eve's process replaced dora's idle one (GATEHOUSE_POOL_MAX=1)");
    await eventually('idle per-user process reaped', () => (processesWith(marker).length === 1 ? true : undefined), 10_000);
  });
});
