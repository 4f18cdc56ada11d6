import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { parseKeyRing } from '../../src/secrets/secret-crypto.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { findLeaks } from '../support/leaks.js';
import { TEST_ENCRYPTION_KEYS, freePort } from '../support/process.js';
import { eventually } from '../support/upstreams.js';

const JWT_SECRET = 'leaks-test-jwt-secret-0123456789abcdef';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;
const FIXTURE = resolve('test/fixtures/stderr-echo-upstream.mjs');
const hex = (n = 4) => randomBytes(n).toString('hex');

/**
 * Every secret or credential this file hands Gatehouse: none may appear, in any encoding (raw,
 * JSON-escaped, inspect-escaped, URL-encoded, base64, each line on its own), in a log line, an
 * API response or an error. They hold NUL, CR, LF, quotes, backslashes and non-ASCII.
 */
const V = {
  token: `tok"'\\é€-${hex()}`,
  short: `"\\é${hex(2)}`, // 7 characters: under the 8-character rule for literals
  pem: `-----BEGIN ${hex()}-----\nline-${hex()}\n-----END ${hex()}-----`,
  greeting: `hi "${hex()}" \\ ü`,
  nul: `nul-${hex()}\u0000tail-${hex()}`,
  crlf: `crlf-${hex()}\r\nX-Injected: ${hex()}`,
  literal: `lit-${hex()}\r\nX-Evil: ${hex()}`,
  envNul: `env-${hex()}\u0000x`,
  argToken: `argtok-${hex()}`,
  argKey: `argkey-${hex()}`,
  urlPassword: `pw-${hex()}`,
  urlQuery: `qk-${hex()}`,
};

interface Reply {
  status: number;
  text: string;
  json: { error?: { code: string; message: string }; status?: { state: string; lastError: string | null }; args?: string[]; url?: string };
}

describe('secrets never leak: validation, errors by code, masked stderr and views', () => {
  let db: TestDatabase;
  let app: TestApp;
  let echo: ChildProcess;
  let echoUrl: string;
  const apiBodies: string[] = [];
  const errors: string[] = [];
  const admin = { 'x-api-key': ADMIN_KEY };
  const users: Record<string, Record<string, string>> = {};

  async function call(path: string, init: { method?: string; headers?: Record<string, string>; body?: unknown } = {}): Promise<Reply> {
    const res = await fetch(`${app.url}${path}`, {
      method: init.method ?? 'GET',
      headers: { ...(init.body === undefined ? {} : { 'content-type': 'application/json' }), ...init.headers },
      body: init.body === undefined ? undefined : JSON.stringify(init.body),
    });
    const text = await res.text();
    apiBodies.push(text);
    return { status: res.status, text, json: (text ? JSON.parse(text) : {}) as Reply['json'] };
  }

  /** Calls a tool; an error result or a JSON-RPC error is recorded for the leak sweep. */
  async function tool(who: Record<string, string>, name: string, args: Record<string, unknown> = {}): Promise<{ text: string; isError: boolean }> {
    const client = new LegacyClient({ name: 'leaks-test', version: '1' });
    await client.connect(new LegacyTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: who } }));
    try {
      const result = await client.callTool({ name, arguments: args });
      const text = (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
      if (result.isError === true) errors.push(text);
      return { text, isError: result.isError === true };
    } catch (error) {
      const text = `${(error as Error).message} ${JSON.stringify((error as { data?: unknown }).data ?? null)}`;
      errors.push(text);
      return { text, isError: true };
    } finally {
      await client.close();
    }
  }

  const put = (path: string, value: string, headers: Record<string, string>) => call(path, { method: 'PUT', headers, body: { value } });
  const state = async (name: string) => (await call(`/api/v1/servers/${name}`, { headers: admin })).json.status;
  const connected = (name: string) => eventually(`${name} connected`, async () => ((await state(name))?.state === 'connected' ? true : undefined));

  /** Seals `value` into `who`'s existing row, as a value stored before validation existed would be. */
  async function storeBefore(who: string, server: string, name: string, value: string): Promise<void> {
    const [row] = await db.query<{ id: string; owner: string }>(
      'SELECT s.id, s.owner FROM secrets s JOIN users u ON u.id::text = s.owner WHERE u.subject = $1 AND s.server = $2 AND s.name = $3',
      [who, server, name],
    );
    const sealed = parseKeyRing(TEST_ENCRYPTION_KEYS).seal(value, { owner: row.owner, server, name });
    await db.query('UPDATE secrets SET key_id = $1, nonce = $2, ciphertext = $3 WHERE id = $4', [sealed.keyId, sealed.nonce, sealed.ciphertext, row.id]);
  }

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY, LOG_LEVEL: 'debug' });
    for (const who of ['alice', 'bob', 'carol']) users[who] = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: who, email: `${who}@example.com` })}` };
    const port = await freePort();
    echo = spawn(process.execPath, [resolve('bench/echo-upstream.mjs')], { env: { ...process.env, PORT: String(port), HEADER_TOOL: '1' }, stdio: 'ignore' });
    echoUrl = `http://127.0.0.1:${port}/mcp`;
    await eventually('echo upstream', () => fetch(echoUrl, { method: 'GET' }).then(() => true, () => undefined));
    const servers = [
      { name: 'leaky', transport: 'stdio', command: process.execPath, args: [FIXTURE], env: { TOKEN: '${secret:TOKEN}', SHORT: '${secret:SHORT}', PEM: '${secret:PEM}', ECHO_VARS: 'TOKEN,SHORT,PEM' } },
      { name: 'hdr', transport: 'streamable_http', url: echoUrl, headers: { Authorization: 'Bearer ${secret:HTOKEN}' } },
      { name: 'inj', transport: 'stdio', command: process.execPath, args: [FIXTURE], inject: { message: '${secret:GREETING}' } },
      { name: 'legacy', transport: 'streamable_http', url: echoUrl, headers: { 'X-Key': 'placeholder-value' } },
    ];
    for (const server of servers) assert.equal((await call('/api/v1/servers', { method: 'POST', headers: admin, body: server })).status, 201);
    for (const { name } of servers) await connected(name);
  });

  after(async () => {
    echo.kill();
    await app.shutdown('test done');
    await db.drop();
  });

  it('refuses values their place cannot hold with a 400 naming the field and the character class', async () => {
    let r = await put('/api/v1/me/secrets/leaky/TOKEN', V.nul, users.bob);
    assert.equal(r.status, 400, r.text);
    // (A body-wide NUL check, if one runs first, may word it differently: field and class are what count.)
    assert.match(r.json.error!.message, /^value: .*NUL character/);
    r = await put('/api/v1/me/secrets/hdr/HTOKEN', V.crlf, users.bob);
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error!.message, /^value: contains a line break \(CR or LF\), which an HTTP header value cannot hold; server "hdr" passes HTOKEN in headers\.Authorization$/);
    assert.equal((await put('/api/v1/servers/hdr/secrets/HTOKEN', V.crlf, admin)).status, 400, 'shared secrets too');
    assert.equal((await db.query('SELECT 1 FROM secrets')).length, 0, 'nothing stored');

    r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'bad-env', transport: 'stdio', command: 'x', env: { API_TOKEN: V.envNul } } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error!.message, /env\.API_TOKEN: .*NUL character/);
    r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'bad-hdr', transport: 'sse', url: echoUrl, headers: { 'X-Key': V.literal } } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error!.message, /headers\.X-Key: contains a line break \(CR or LF\)/);
    r = await call('/api/v1/servers/legacy', { method: 'PATCH', headers: admin, body: { headers: { 'X-Key': V.literal } } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error!.message, /headers\.X-Key: contains a line break/);
  });

  it('refuses at call time a value stored before, naming the secret and never quoting it', async () => {
    // alice's TOKEN (env) and carol's HTOKEN (header) were stored before validation existed.
    for (const [name, value] of [['TOKEN', 'ok-1'], ['SHORT', 'ok-2'], ['PEM', 'ok-3']]) assert.equal((await put(`/api/v1/me/secrets/leaky/${name}`, value, users.alice)).status, 204);
    await storeBefore('alice', 'leaky', 'TOKEN', V.nul);
    const alice = await tool(users.alice, 'leaky__echo', { message: 'x' });
    assert.equal(alice.isError, true);
    assert.match(alice.text, /^Secret "TOKEN" for server "leaky" cannot be used: it contains a NUL character \(U\+0000\), which an environment variable cannot hold \(env\.TOKEN\)\. Set it again with: PUT /);
    assert.deepEqual(findLeaks({ nul: V.nul }, { 'the tool result': [alice.text] }), []);

    assert.equal((await put('/api/v1/me/secrets/hdr/HTOKEN', 'ok-4', users.carol)).status, 204);
    await storeBefore('carol', 'hdr', 'HTOKEN', V.crlf);
    const carol = await tool(users.carol, 'hdr__header', { name: 'authorization' });
    assert.equal(carol.isError, true);
    assert.match(carol.text, /^Secret "HTOKEN" for server "hdr" cannot be used: it contains a line break \(CR or LF\), which an HTTP header value cannot hold \(headers\.Authorization\)/);
  });

  it('describes a connection failure by what broke, not by the message that quotes the value', async () => {
    // A header literal stored before validation existed: the restart reads it from the row.
    await db.query(`UPDATE upstream_servers SET headers = jsonb_build_object('X-Key', $1::text) WHERE name = 'legacy'`, [V.literal]);
    assert.equal((await call('/api/v1/servers/legacy', { method: 'PATCH', headers: admin, body: { enabled: false } })).status, 200);
    assert.equal((await call('/api/v1/servers/legacy', { method: 'PATCH', headers: admin, body: { enabled: true } })).status, 200);
    const status = await eventually('legacy failed', async () => {
      const s = await state('legacy');
      return s?.state === 'error' && s.lastError ? s : undefined;
    });
    assert.equal(status.lastError, "headers.X-Key: contains a line break (CR or LF), which an HTTP header value cannot hold; not sent (fix the server's configuration)");
  });

  it('masks every resolved value in debug stderr lines and upstream errors: short ones, each line, every encoding', async () => {
    for (const [name, value] of [['TOKEN', V.token], ['SHORT', V.short], ['PEM', V.pem]]) assert.equal((await put(`/api/v1/me/secrets/leaky/${name}`, value, users.bob)).status, 204);
    assert.equal((await tool(users.bob, 'leaky__echo', { message: 'hello' })).isError, false);
    assert.equal((await put('/api/v1/me/secrets/inj/GREETING', V.greeting, users.bob)).status, 204);
    assert.equal((await tool(users.bob, 'inj__echo')).isError, false);
    const failed = await tool(users.bob, 'leaky__fail');
    assert.match(failed.text, /Upstream MCP server "leaky": refused with \[REDACTED\] \{"token":"\[REDACTED\]"\}$/);

    const stderr = () => app.logs.lines.filter((l) => l.msg === 'upstream stderr').map((l) => String(l.stderr));
    // The fixture writes 5 encodings + each line of TOKEN, SHORT and PEM, and of the injected message.
    await eventually('stderr lines logged', () => (stderr().filter((l) => l.startsWith('PEM line: ')).length >= 3 && stderr().some((l) => l.startsWith('message line: ')) ? true : undefined));
    // The injected message is the only one `inj` echoes; `leaky` also echoed "hello".
    const lines = app.logs.lines.filter((l) => l.msg === 'upstream stderr' && (l.server === 'inj' || !String(l.stderr).startsWith('message'))).map((l) => String(l.stderr));
    for (const label of ['TOKEN', 'SHORT', 'PEM', 'message']) {
      const mine = lines.filter((l) => l.startsWith(`${label}: `) && !l.endsWith(': ') && !l.endsWith('""') && !l.endsWith("''"));
      assert.ok(mine.length >= 5, `${label}: ${JSON.stringify(mine)}`);
      for (const line of mine) assert.match(line, /\[REDACTED\]/, `${label} masked in ${line}`);
    }
  });

  it('masks credentials in admin views outside the key-name heuristic: url userinfo and query, args after --token-like flags', async () => {
    const url = `${echoUrl.replace('http://', `http://ada:${V.urlPassword}@`)}?api_key=${V.urlQuery}&page=2`;
    const args = [FIXTURE, '--token', V.argToken, `--api-key=${V.argKey}`, '--verbose'];
    let r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'viewed', transport: 'stdio', command: process.execPath, args, env: { ECHO_ARGS: '1' } } });
    assert.equal(r.status, 201, r.text);
    assert.deepEqual(r.json.args, [FIXTURE, '--token', '[REDACTED]', '--api-key=[REDACTED]', '--verbose']);
    r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'viewed-http', transport: 'streamable_http', url, enabled: false } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.url, `${echoUrl.replace('http://', 'http://[REDACTED]@')}?api_key=[REDACTED]&page=2`);
    const listed = await call('/api/v1/servers', { headers: admin });
    assert.ok(listed.text.includes('[REDACTED]'));

    // An admin edits what the view shows and sends it back: the stored credentials are kept.
    const view = (await call('/api/v1/servers/viewed', { headers: admin })).json;
    assert.equal((await call('/api/v1/servers/viewed', { method: 'PATCH', headers: admin, body: { args: view.args, description: 'edited' } })).status, 200);
    const httpView = (await call('/api/v1/servers/viewed-http', { headers: admin })).json;
    assert.equal((await call('/api/v1/servers/viewed-http', { method: 'PATCH', headers: admin, body: { url: httpView.url } })).status, 200);
    // The process echoes its arguments to stderr: logged (debug) with the credentials masked.
    const argLines = await eventually('viewed echoed its args', () => {
      const found = app.logs.lines.filter((l) => l.msg === 'upstream stderr' && l.server === 'viewed' && String(l.stderr).startsWith('args'));
      return found.length >= 6 ? found : undefined;
    });
    // (The base64 of the whole command line is another string: the sweep checks each value's own base64.)
    for (const line of argLines.filter((l) => !/^args: [A-Za-z0-9+/=]+$/.test(String(l.stderr)))) assert.match(String(line.stderr), /\[REDACTED\]/);
    const rows = await db.query<{ name: string; args: string[]; url: string | null }>("SELECT name, args, url FROM upstream_servers WHERE name IN ('viewed', 'viewed-http') ORDER BY name");
    assert.deepEqual(rows[0].args, args);
    assert.equal(rows[1].url, url);
  });

  it('never shows any of these values, in any encoding, in a log line, an API response or an error', () => {
    assert.ok(app.logs.lines.some((l) => l.msg === 'upstream stderr'), 'debug logging ran');
    assert.ok(errors.length >= 3 && apiBodies.length > 20, 'errors and responses were captured');
    assert.deepEqual(findLeaks(V, { 'log output': [app.logs.raw], 'an API response': apiBodies, 'an error': errors }), []);
  });
});
