import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Module, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { Public } from '../../src/common/decorators/public.decorator.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { ACCEPT, LEGACY } from '../support/mcp-raw.js';

/** A latch the held route waits on; `entered` resolves when a request is inside it. */
function latch(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
const hold = { entered: latch(), release: latch() };

/** A streamed response already under way when shutdown starts (its connection stays open until it ends). */
@Controller('test')
@Public()
class HoldController {
  @Get('hold')
  async held(@Res() reply: FastifyReply): Promise<void> {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    reply.raw.write('started;');
    hold.entered.resolve();
    await hold.release.promise;
    reply.raw.end('done');
  }
}

@Module({ controllers: [HoldController] })
class HoldModule {}

const SECRET = 'input-test-secret-0123456789abcdefghij';
const JSON_HEADERS = { 'content-type': 'application/json' };
const NUL = 'a\u0000b';
const SURROGATE = 'a\uD800b';

interface Answer {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | undefined;
}

/** A request with a raw JSON text body (so bodies can be nested deeper than JSON.stringify allows). */
let ADMIN: Record<string, string> = {};

async function send(url: string, method: string, body?: string, headers: Record<string, string> = { ...JSON_HEADERS, ...ADMIN }): Promise<Answer> {
  const res = await fetch(url, { method, headers, ...(body === undefined ? {} : { body }) });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** The documented admin error envelope with `code`; returns its message. */
function assertEnvelope(a: Answer, status: number, code: string): string {
  assert.equal(a.status, status, a.text);
  const error = (a.json as { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | undefined)?.error;
  assert.ok(error, `expected { error: … }, got ${a.text.slice(0, 200)}`);
  assert.deepEqual(Object.keys(a.json!), ['error']);
  assert.equal(error.code, code, a.text);
  assert.equal(typeof error.message, 'string');
  assert.equal(typeof error.requestId, 'string');
  return error.message as string;
}

/** The JSON-RPC error envelope `/mcp` answers with. */
function assertRpcError(a: Answer, status: number): string {
  assert.equal(a.status, status, a.text);
  const body = a.json as { jsonrpc?: unknown; error?: { code?: unknown; message?: unknown } };
  assert.equal(body?.jsonrpc, '2.0', a.text);
  assert.equal(typeof body.error?.code, 'number');
  return body.error!.message as string;
}

/** Writes `text` on a fresh TCP connection and collects everything until the server closes it. */
function rawExchange(port: number, text: string | Buffer, opts: { keepOpen?: boolean } = {}): Promise<{ data: string; closedAt: number }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = '';
    socket.on('data', (d) => (data += d.toString('utf8')));
    socket.on('error', (e) => (data ? resolve({ data, closedAt: Date.now() }) : reject(e)));
    socket.on('close', () => resolve({ data, closedAt: Date.now() }));
    socket.write(text);
    if (!opts.keepOpen) socket.end();
  });
}

const httpBody = (raw: string) => JSON.parse(raw.slice(raw.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
const nested = (depth: number, leaf = '1') => '{"a":'.repeat(depth) + leaf + '}'.repeat(depth);
const initialize = (clientInfo: string, capabilities: string, protocolVersion = `"${LEGACY}"`) =>
  `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":${protocolVersion},"capabilities":${capabilities},"clientInfo":${clientInfo}}}`;
const MCP_HEADERS = { 'content-type': 'application/json', accept: ACCEPT };

describe('bad input never reaches a 500', () => {
  let db: TestDatabase;
  let app: TestApp;
  let port: number;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'none,bearer', MCP_JWT_SECRET: SECRET, HTTP_BODY_TIMEOUT: '300' });
    port = Number(new URL(app.url).port);
    ADMIN = { authorization: `Bearer ${await hsToken(SECRET, { sub: 'input-admin', roles: ['admin'] })}` };
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('initialize with NUL and unpaired surrogates in clientInfo/capabilities opens a session; only known fields are stored, cleaned and bounded', async () => {
    const clientInfo = JSON.stringify({ name: NUL, version: SURROGATE, title: 'T'.repeat(50_000), icons: [{ src: `data:image/png;base64,${'A'.repeat(20_000)}` }], extra: { x: NUL } });
    const capabilities = JSON.stringify({ roots: { listChanged: true }, experimental: { [NUL]: { v: SURROGATE } }, bogus: { big: 'x'.repeat(50_000) } });
    const res = await send(`${app.url}/mcp`, 'POST', initialize(clientInfo, capabilities), MCP_HEADERS);
    assert.equal(res.status, 200, res.text);
    assert.ok(res.headers.get('mcp-session-id'));
    const rows = await db.query<{ client_info: Record<string, string>; capabilities: Record<string, unknown> }>('SELECT client_info, capabilities FROM mcp_sessions');
    assert.equal(rows.length, 1);
    assert.deepEqual(Object.keys(rows[0].client_info).sort(), ['name', 'title', 'version']);
    assert.equal(rows[0].client_info.name, 'a\uFFFDb');
    assert.equal(rows[0].client_info.version, 'a\uFFFDb');
    assert.equal(rows[0].client_info.title.length, 256);
    assert.deepEqual(rows[0].capabilities, { roots: { listChanged: true }, experimental: { 'a\uFFFDb': { v: 'a\uFFFDb' } } });

    // A protocol version with a NUL is not a 500 either (the SDK answers with its own version).
    const odd = await send(`${app.url}/mcp`, 'POST', initialize('{"name":"x","version":"1"}', '{}', JSON.stringify(NUL)), MCP_HEADERS);
    assert.ok(odd.status < 500, odd.text);
  });

  it('JSON nested deeper than HTTP_MAX_JSON_DEPTH (64) is 400 json_too_deep on admin routes and on /mcp; 64 levels are fine', async () => {
    const server = `{"name":"deep","transport":"stdio","command":"x","description":${nested(5000)}}`;
    const msg = assertEnvelope(await send(`${app.url}/api/v1/servers`, 'POST', server), 400, 'json_too_deep');
    assert.match(msg, /deeper than 64 levels \(HTTP_MAX_JSON_DEPTH\)/);
    assertEnvelope(await send(`${app.url}/api/v1/policies`, 'POST', `{"subject":${nested(3000)}}`), 400, 'json_too_deep');
    assertEnvelope(await send(`${app.url}/api/v1/servers/x`, 'PATCH', '['.repeat(100_000) + ']'.repeat(100_000)), 400, 'json_too_deep');
    const rpc = await send(`${app.url}/mcp`, 'POST', initialize('{"name":"x","version":"1"}', `{"experimental":${nested(5000)}}`), MCP_HEADERS);
    assert.match(assertRpcError(rpc, 400), /deeper than 64 levels/);
    // The body's own object is level 1, params 2, capabilities 3, experimental 4: 60 more fit.
    const ok = await send(`${app.url}/mcp`, 'POST', initialize('{"name":"x","version":"1"}', `{"experimental":${nested(60)}}`), MCP_HEADERS);
    assert.equal(ok.status, 200, ok.text);
  });

  it('a DELETE with a JSON Content-Type and no body (as the MCP Python SDK ends a session) ends the session; a POST with no body stays 400', async () => {
    const init = await send(`${app.url}/mcp`, 'POST', initialize('{"name":"python-like","version":"1"}', '{}'), MCP_HEADERS);
    assert.equal(init.status, 200, init.text);
    const session = init.headers.get('mcp-session-id')!;
    // The Python SDK's StreamableHTTPTransport._prepare_headers: accept, content-type, session, version — on every request.
    const headers = { ...MCP_HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': LEGACY };
    const del = await send(`${app.url}/mcp`, 'DELETE', undefined, headers);
    assert.equal(del.status, 200, del.text);
    const after = await send(`${app.url}/mcp`, 'POST', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', headers);
    assert.equal(after.status, 404, `the session is over: ${after.text}`);
    // The same on the admin API: a body-less DELETE is not "an empty JSON document".
    const created = await send(`${app.url}/api/v1/policies`, 'POST', JSON.stringify({ subject: { role: 'nobody' }, effect: 'deny', operations: ['tools/call'], targets: ['x__y'] }));
    assert.equal(created.status, 201, created.text);
    const removed = await send(`${app.url}/api/v1/policies/${(created.json as { id: string }).id}`, 'DELETE');
    assert.equal(removed.status, 204, removed.text);
    // A POST with nothing is still refused, in the envelope, naming what is expected.
    assert.match(assertEnvelope(await send(`${app.url}/api/v1/policies`, 'POST', ''), 400, 'invalid_json'), /empty; expected a JSON document/);
  });

  it('a DELETE with a chunked empty body is body-less too; bytes after a Content-Length: 0 DELETE are neither its body nor a request served', async () => {
    const open = async () => {
      const init = await send(`${app.url}/mcp`, 'POST', initialize('{"name":"delete-probe","version":"1"}', '{}'), MCP_HEADERS);
      assert.equal(init.status, 200, init.text);
      return init.headers.get('mcp-session-id')!;
    };
    const head = (session: string) =>
      `DELETE /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\ncontent-type: application/json\r\naccept: ${ACCEPT}\r\nmcp-protocol-version: ${LEGACY}\r\nmcp-session-id: ${session}\r\n`;
    const listIn = (session: string) => send(`${app.url}/mcp`, 'POST', '{"jsonrpc":"2.0","id":1,"method":"tools/list"}', { ...MCP_HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': LEGACY });
    const chunked = await open();
    const ended = await rawExchange(port, `${head(chunked)}transfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n`, { keepOpen: true });
    assert.match(ended.data, /^HTTP\/1\.1 200 /, ended.data.slice(0, 200));
    assert.equal((await listIn(chunked)).status, 404, 'the session is over');
    const trailing = await open();
    const smuggled = await rawExchange(port, `${head(trailing)}content-length: 0\r\n\r\n{"jsonrpc":"2.0","id":987654,"method":"tools/list"}`, { keepOpen: true });
    // The trailing bytes are the next request's start line to Node's parser: malformed, answered 400, connection closed.
    assert.match(smuggled.data, /HTTP\/1\.1 400 [^]*Malformed HTTP request/, smuggled.data.slice(0, 400));
    assert.doesNotMatch(smuggled.data, /987654/, 'the trailing JSON was not served');
  });

  it('a well-formed body with a "__proto__" key is refused 400 naming the key, not as "not valid JSON"', async () => {
    const msg = assertEnvelope(await send(`${app.url}/api/v1/policies`, 'POST', '{"subject":"*","__proto__":{"admin":true}}'), 400, 'invalid_json');
    assert.match(msg, /"__proto__" key/);
    assert.doesNotMatch(msg, /not valid JSON/);
    const rpc = await send(`${app.url}/mcp`, 'POST', '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"constructor":{"prototype":{"x":1}}}}', MCP_HEADERS);
    assert.match(assertRpcError(rpc, 400), /"constructor" object with a "prototype" key/);
  });

  it('every free-text field of every admin write refuses NUL and unpaired surrogates: 400 naming the field and the character class', async () => {
    const created = await send(`${app.url}/api/v1/servers`, 'POST', JSON.stringify({ name: 'target', transport: 'stdio', command: 'node', enabled: false }));
    assert.equal(created.status, 201, created.text);
    const policy = await send(`${app.url}/api/v1/policies`, 'POST', JSON.stringify({ subject: { role: 'member' }, effect: 'allow', operations: ['tools/call'], targets: ['*'] }));
    assert.equal(policy.status, 201, policy.text);
    const policyId = (policy.json as { id: string }).id;
    const stdio = { name: 'fresh', transport: 'stdio', command: 'node' };
    const http = { name: 'fresh', transport: 'streamable_http', url: 'http://127.0.0.1:1/mcp' };
    const cases: { method: string; path: string; field: string; body: (v: string) => unknown }[] = [
      { method: 'POST', path: '/api/v1/servers', field: 'command', body: (v) => ({ ...stdio, command: v }) },
      { method: 'POST', path: '/api/v1/servers', field: 'args.1', body: (v) => ({ ...stdio, args: ['ok', v] }) },
      { method: 'POST', path: '/api/v1/servers', field: 'env.TOKEN', body: (v) => ({ ...stdio, env: { TOKEN: v } }) },
      { method: 'POST', path: '/api/v1/servers', field: 'cwd', body: (v) => ({ ...stdio, cwd: v }) },
      { method: 'POST', path: '/api/v1/servers', field: 'description', body: (v) => ({ ...stdio, description: v }) },
      { method: 'POST', path: '/api/v1/servers', field: 'inject.team', body: (v) => ({ ...stdio, inject: { team: v } }) },
      { method: 'POST', path: '/api/v1/servers', field: 'url', body: (v) => ({ ...http, url: `http://127.0.0.1:1/${v}` }) },
      { method: 'POST', path: '/api/v1/servers', field: 'headers.X-Team', body: (v) => ({ ...http, headers: { 'X-Team': v } }) },
      { method: 'PATCH', path: '/api/v1/servers/target', field: 'description', body: (v) => ({ description: v }) },
      { method: 'PATCH', path: '/api/v1/servers/target', field: 'args.0', body: (v) => ({ args: [v] }) },
      { method: 'POST', path: '/api/v1/policies', field: 'subject.group', body: (v) => ({ subject: { group: v }, effect: 'deny', operations: ['tools/call'], targets: ['*'] }) },
      { method: 'POST', path: '/api/v1/policies', field: 'description', body: (v) => ({ subject: { role: 'member' }, effect: 'deny', operations: ['tools/call'], targets: ['*'], description: v }) },
      { method: 'PATCH', path: `/api/v1/policies/${policyId}`, field: 'description', body: (v) => ({ description: v }) },
      { method: 'POST', path: '/api/v1/api-keys', field: 'name', body: (v) => ({ name: v }) },
      { method: 'PUT', path: '/api/v1/servers/target/secrets/TOKEN', field: 'value', body: (v) => ({ value: v }) },
      { method: 'PUT', path: '/api/v1/me/secrets/target/TOKEN', field: 'value', body: (v) => ({ value: v }) },
    ];
    for (const c of cases) {
      for (const [value, what] of [
        [NUL, /contains a NUL character \(U\+0000\)/],
        [SURROGATE, /contains an unpaired UTF-16 surrogate \(invalid Unicode\)/],
      ] as const) {
        const res = await send(`${app.url}${c.path}`, c.method, JSON.stringify(c.body(value)));
        const message = assertEnvelope(res, 400, 'validation_failed');
        assert.ok(message.startsWith(`${c.field}: `), `${c.method} ${c.path}: ${message}`);
        assert.match(message, what, `${c.method} ${c.path} ${c.field}`);
      }
    }
    assert.equal((await db.query('SELECT 1 FROM upstream_servers WHERE name = $1', ['fresh'])).length, 0, 'nothing was stored');
  });

  it('JWT claims: NUL and unpaired surrogates in email, name and groups are stored as U+FFFD; such a subject is 401', async () => {
    const token = await hsToken(SECRET, { sub: 'claims-user', email: `e${NUL}@x.example`, name: `N${SURROGATE}`, groups: ['ok', `g${NUL}`] });
    const me = await send(`${app.url}/api/v1/me`, 'GET', undefined, { authorization: `Bearer ${token}` });
    assert.equal(me.status, 200, me.text);
    const [user] = await db.query<{ email: string; display_name: string; groups: string[] }>('SELECT email, display_name, groups FROM users WHERE subject = $1', ['claims-user']);
    assert.equal(user.email, 'ea\uFFFDb@x.example');
    assert.equal(user.display_name, 'Na\uFFFDb');
    assert.deepEqual(user.groups, ['ok', 'ga\uFFFDb']);

    const badSubject = await hsToken(SECRET, { sub: `s${NUL}` });
    const refused = await send(`${app.url}/api/v1/me`, 'GET', undefined, { authorization: `Bearer ${badSubject}` });
    assert.match(assertEnvelope(refused, 401, 'unauthorized'), /subject contains a NUL character/);
  });

  it('414 (long path parameter), 431 (headers too large), 400 (malformed URL or request) use the envelope; /mcp gets a JSON-RPC body', async () => {
    assert.match(assertEnvelope(await send(`${app.url}/api/v1/servers/${'a'.repeat(500)}`, 'GET'), 414, 'uri_too_long'), /too long/);
    assertRpcError(await send(`${app.url}/mcp/${'a'.repeat(500)}`, 'POST', '{}', MCP_HEADERS), 414);
    assertEnvelope(await send(`${app.url}/api/v1/servers/%E0%A4%A`, 'GET'), 400, 'bad_request');
    assertRpcError(await send(`${app.url}/mcp/%ED%A0%80`, 'POST', '{}', MCP_HEADERS), 400);

    const big = await rawExchange(port, `GET /api/v1/servers HTTP/1.1\r\nHost: localhost\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`);
    assert.match(big.data, /^HTTP\/1\.1 431 /);
    assert.equal((httpBody(big.data).error as { code: string }).code, 'headers_too_large');
    const longLine = await rawExchange(port, `POST /mcp?${'q'.repeat(20_000)} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    assert.match(longLine.data, /^HTTP\/1\.1 431 /);
    assert.equal(httpBody(longLine.data).jsonrpc, '2.0');
    const garbage = await rawExchange(port, 'NOT HTTP AT ALL\r\n\r\n');
    assert.match(garbage.data, /^HTTP\/1\.1 400 /);
    assert.equal((httpBody(garbage.data).error as { code: string }).code, 'bad_request');
  });

  it('a body that stops arriving is answered 408 in the envelope after HTTP_BODY_TIMEOUT, and its connection is closed', async () => {
    const started = Date.now();
    const slow = await rawExchange(
      port,
      `POST /api/v1/policies HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"subject":`,
      { keepOpen: true },
    );
    assert.match(slow.data, /^HTTP\/1\.1 408 /);
    assert.match(slow.data, /\r\nconnection: close\r\n/i);
    const body = httpBody(slow.data) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'request_timeout');
    assert.match(body.error.message, /HTTP_BODY_TIMEOUT/);
    assert.ok(slow.closedAt - started < 10_000, 'cut long before HTTP_REQUEST_TIMEOUT (300 s)');

    const mcp = await rawExchange(port, `POST /mcp HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nAccept: ${ACCEPT}\r\nContent-Length: 50\r\n\r\n{`, {
      keepOpen: true,
    });
    assert.match(mcp.data, /^HTTP\/1\.1 408 /);
    assert.equal(httpBody(mcp.data).jsonrpc, '2.0');
  });
});

describe('the 503 while shutting down', () => {
  it('a request arriving (pipelined behind a response under way) during the drain gets 503 service_unavailable in the envelope', async () => {
    const db = await createTestDatabase();
    const app = await startTestApp(db.url, { SHUTDOWN_TIMEOUT: '10000' }, { imports: [HoldModule] });
    try {
      const port = Number(new URL(app.url).port);
      const server = app.app.getHttpServer();
      const socket = connect(port, '127.0.0.1');
      let data = '';
      socket.on('data', (d) => (data += d.toString('utf8')));
      const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
      socket.write('GET /test/hold HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await hold.entered.promise;
      while (!data.includes('started;')) await new Promise((r) => socket.once('data', r));
      const stopped = app.shutdown('test');
      // The second (pipelined) request reaches the server while it drains.
      const second = new Promise<void>((resolve) => server.once('request', () => resolve()));
      socket.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await second;
      hold.release.resolve();
      await closed;
      assert.equal(await stopped, 0);
      const responses = data.split(/(?=HTTP\/1\.1 )/);
      assert.equal(responses.length, 2, data);
      assert.match(responses[0], /^HTTP\/1\.1 200 /);
      assert.match(responses[1], /^HTTP\/1\.1 503 /);
      const body = httpBody(responses[1]) as { error: { code: string; message: string; requestId: string } };
      assert.equal(body.error.code, 'service_unavailable');
      assert.match(body.error.message, /shutting down/);
      assert.equal(typeof body.error.requestId, 'string');
    } finally {
      hold.release.resolve();
      await app.shutdown('test');
      await db.drop();
    }
  });
});
