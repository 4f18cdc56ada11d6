import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown> | undefined;
}

/** One request with exactly these headers (Host included: `fetch` would not let a test set it). */
function send(base: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<Answer> {
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = request(
      `${base}${path}`,
      { method, headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let json: Record<string, unknown> | undefined;
          try {
            json = JSON.parse(text) as Record<string, unknown>;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** A request written byte for byte (malformed or repeated Host headers), answered on a closing connection. */
function rawRequest(base: string, head: string, body = ''): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(base);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(`${head}${body ? `Content-Length: ${Buffer.byteLength(body)}\r\n` : ''}Connection: close\r\n\r\n${body}`));
    let out = '';
    socket.setEncoding('utf8');
    socket.on('data', (c: string) => (out += c));
    socket.on('error', reject);
    socket.on('close', () => {
      const [statusLine = '', ...rest] = out.split('\r\n');
      const bodyText = rest.join('\r\n').split('\r\n\r\n').slice(1).join('\r\n\r\n');
      resolve({ status: Number(statusLine.split(' ')[1] ?? 0), body: bodyText });
    });
  });
}

const errorOf = (a: Answer) => (a.json as { error?: { code?: string; message?: string; requestId?: string } } | undefined)?.error;

describe('browser-reachable routes: Host and Origin on every route', () => {
  let db: TestDatabase;
  let app: TestApp;
  let loose: TestApp;
  let host: string;
  const marker = join(tmpdir(), `gatehouse-rebinding-${randomUUID()}`);
  /** A stdio "server" that proves it ran by writing a file: what a rebinding page would register. */
  const dropper = (name: string) => ({
    name,
    transport: 'stdio',
    command: process.execPath,
    args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')`],
  });
  const servers = async (on: TestApp = app) => ((await send(on.url, 'GET', '/api/v1/servers', {})).json as { items: { name: string }[] }).items.map((s) => s.name);

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    loose = await startTestApp(db.url, { HTTP_DNS_REBINDING_PROTECTION: 'false' });
    host = new URL(app.url).host;
  });
  after(async () => {
    await loose.shutdown('test done');
    await app.shutdown('test done');
    await db.drop();
  });

  it('a page on a rebinding domain cannot register a stdio server: a foreign Host is 403 on the admin API', async () => {
    const rebound = `attacker.example:${new URL(app.url).port}`;
    const created = await send(app.url, 'POST', '/api/v1/servers', { host: rebound, origin: `http://${rebound}`, 'sec-fetch-site': 'same-origin' }, dropper('rebound'));
    assert.equal(created.status, 403, created.text);
    assert.equal(errorOf(created)?.code, 'forbidden');
    assert.match(errorOf(created)?.message ?? '', /Host "attacker\.example:\d+" is not allowed \(HTTP_ALLOWED_HOSTS\)/);
    assert.equal(errorOf(created)?.requestId, created.headers['x-request-id']);
    // Reads too: a rebound page must not read the admin API either.
    assert.equal((await send(app.url, 'GET', '/api/v1/servers', { host: rebound })).status, 403);
    assert.equal((await send(app.url, 'GET', '/api/v1/me', { host: rebound })).status, 403);
    assert.deepEqual(await servers(), [], 'nothing was registered');
    assert.equal(existsSync(marker), false, 'and nothing ran');
  });

  it('a cross-site page cannot POST, PATCH or DELETE on the admin API: a foreign Origin is 403 naming Origin and HTTP_CORS_ORIGINS', async () => {
    const evil = { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' };
    const created = await send(app.url, 'POST', '/api/v1/servers', evil, dropper('csrf'));
    assert.equal(created.status, 403, created.text);
    assert.deepEqual(Object.keys(created.json ?? {}), ['error']);
    assert.equal(errorOf(created)?.code, 'forbidden');
    assert.match(errorOf(created)?.message ?? '', /Origin "https:\/\/evil\.example" is not allowed \(HTTP_CORS_ORIGINS\)/);
    // An HTML form needs no preflight: a body-less POST to an action route, with and without Sec-Fetch-Site.
    assert.equal((await send(app.url, 'POST', '/api/v1/servers/any/disable', { origin: 'https://evil.example' })).status, 403);
    assert.equal((await send(app.url, 'PATCH', '/api/v1/servers/any', evil, { description: 'x' })).status, 403);
    assert.equal((await send(app.url, 'DELETE', '/api/v1/servers/any', evil)).status, 403);
    assert.equal((await send(app.url, 'PUT', '/api/v1/me/secrets/any/TOKEN', evil, { value: 'x' })).status, 403);
    // Opaque origins (sandboxed frames, file://) send "null".
    assert.equal((await send(app.url, 'POST', '/api/v1/servers', { origin: 'null' }, dropper('opaque'))).status, 403);
    assert.deepEqual(await servers(), []);
    assert.equal(existsSync(marker), false);
  });

  it('an unsafe request a browser marks cross-site or same-site needs an Origin; same-origin, none and non-browser clients pass', async () => {
    for (const site of ['cross-site', 'same-site']) {
      const res = await send(app.url, 'POST', '/api/v1/servers', { 'sec-fetch-site': site }, dropper(`site-${site}`));
      assert.equal(res.status, 403, `${site}: ${res.text}`);
      assert.equal(errorOf(res)?.code, 'forbidden');
      assert.match(errorOf(res)?.message ?? '', new RegExp(`${site} browser request \\(Sec-Fetch-Site\\) may POST here only with an allowed Origin header \\(HTTP_CORS_ORIGINS\\)`));
    }
    assert.deepEqual(await servers(), []);
    // Safe methods are not refused for Sec-Fetch-Site (nothing changes; CORS keeps the answer from the page).
    assert.equal((await send(app.url, 'GET', '/api/v1/servers', { 'sec-fetch-site': 'cross-site' })).status, 200);
    const parked = (name: string) => ({ ...dropper(name), enabled: false });
    assert.equal((await send(app.url, 'POST', '/api/v1/servers', { 'sec-fetch-site': 'same-origin' }, parked('same-origin'))).status, 201);
    assert.equal((await send(app.url, 'POST', '/api/v1/servers', { 'sec-fetch-site': 'none' }, parked('typed-url'))).status, 201);
    assert.equal((await send(app.url, 'POST', '/api/v1/servers', {}, parked('curl'))).status, 201);
    assert.deepEqual((await servers()).sort(), ['curl', 'same-origin', 'typed-url']);
  });

  it('allowed origins pass: PUBLIC_URL, HTTP_ALLOWED_HOSTS on any port, and the request’s own origin', async () => {
    const parked = (name: string) => ({ name, transport: 'stdio', command: process.execPath, args: ['-e', ''], enabled: false });
    for (const [name, origin] of [
      ['from-public-url', 'http://localhost:3000'],
      ['from-localhost', 'http://localhost:5173'],
      ['from-loopback', `http://${host}`],
    ]) {
      const res = await send(app.url, 'POST', '/api/v1/servers', { origin, 'sec-fetch-site': 'cross-site' }, parked(name));
      assert.equal(res.status, 201, `${origin}: ${res.text}`);
    }
    // Not an origin at all: a path, userinfo, another scheme.
    for (const origin of ['http://localhost:3000/', 'http://user@localhost:3000', 'file://localhost', 'http://localhost.evil.example']) {
      const res = await send(app.url, 'DELETE', '/api/v1/servers/from-localhost', { origin });
      assert.equal(res.status, 403, `${origin}: ${res.text}`);
    }
  });

  it('a malformed Host is 400 with the documented envelope on every route, never 500', async () => {
    const cases: Record<string, string> = {
      'unclosed IPv6 literal': 'Host: [::1\r\n',
      'a space': 'Host: a b\r\n',
      empty: 'Host: \r\n',
      'two Host headers': `Host: ${host}\r\nHost: attacker.example\r\n`,
      userinfo: 'Host: attacker.example@localhost\r\n',
      'a port out of range': 'Host: localhost:99999\r\n',
      'a path': 'Host: localhost/x\r\n',
    };
    const mcpBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
    for (const [title, hostLine] of Object.entries(cases)) {
      for (const [method, path, body] of [
        ['GET', '/api/v1/servers', ''],
        ['POST', '/api/v1/servers', JSON.stringify(dropper('malformed'))],
        ['GET', '/no/such/route', ''],
      ]) {
        const res = await rawRequest(app.url, `${method} ${path} HTTP/1.1\r\n${hostLine}${body ? 'Content-Type: application/json\r\n' : ''}`, body);
        assert.equal(res.status, 400, `${title}, ${method} ${path}: ${res.body}`);
        const parsed = JSON.parse(res.body) as { error: { code: string; message: string; requestId: string } };
        assert.equal(parsed.error.code, 'bad_request', `${title}: ${res.body}`);
        assert.match(parsed.error.message, /Host/);
        assert.ok(parsed.error.requestId);
      }
      const mcp = await rawRequest(app.url, `POST /mcp HTTP/1.1\r\n${hostLine}Content-Type: application/json\r\nAccept: application/json, text/event-stream\r\n`, mcpBody);
      assert.equal(mcp.status, 400, `${title}, /mcp: ${mcp.body}`);
      const rpc = JSON.parse(mcp.body) as { jsonrpc: string; error: { code: number; message: string; data: { code: string } }; id: null };
      assert.equal(rpc.jsonrpc, '2.0');
      assert.equal(rpc.error.data.code, 'bad_request');
      assert.equal(rpc.id, null);
    }
    // Without Host at all: 400 with the envelope too, outside the probes (HTTP/1.0 allows it; Node would answer a bare 400 for 1.1).
    for (const version of ['1.0', '1.1']) {
      const none = await rawRequest(app.url, `GET /api/v1/servers HTTP/${version}\r\n`);
      assert.equal(none.status, 400, `HTTP/${version}`);
      assert.equal((JSON.parse(none.body) as { error: { code: string } }).error.code, 'bad_request');
    }
    // An absolute-form target names the host itself (RFC 9112 §3.2.2): it is checked instead of Host.
    const absolute = await rawRequest(app.url, `GET http://attacker.example/api/v1/servers HTTP/1.1\r\nHost: ${host}\r\n`);
    assert.equal(absolute.status, 403, absolute.body);
    assert.match(absolute.body, /Host \\"attacker\.example\\" is not allowed/);
    assert.equal(existsSync(marker), false);
  });

  it('the probes answer whatever the Host: a pod IP, another name, none at all', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const pod = await send(app.url, 'GET', path, { host: '10.42.0.17:3000' });
      assert.equal(pod.status, 200, `${path}: ${pod.text}`);
      assert.equal((await send(app.url, 'GET', `${path}?probe=1`, { host: 'gatehouse.default.svc.cluster.local:3000' })).status, 200);
      assert.equal((await rawRequest(app.url, `GET ${path} HTTP/1.0\r\n`)).status, 200);
      assert.equal((await rawRequest(app.url, `GET ${path} HTTP/1.1\r\n`)).status, 200);
    }
    // Only those two paths: what lies beside them is checked.
    assert.equal((await send(app.url, 'GET', '/healthz/../api/v1/servers', { host: '10.42.0.17:3000' })).status, 403);
    assert.equal((await send(app.url, 'GET', '/api/v1/servers?/healthz', { host: '10.42.0.17:3000' })).status, 403);
  });

  it('/mcp answers the same check with a JSON-RPC error, and accepts the IPv6 loopback [::1] allowed by default', async () => {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
    const accept = { accept: 'application/json, text/event-stream' };
    const foreign = await send(app.url, 'POST', '/mcp', { ...accept, host: 'attacker.example' }, init);
    assert.equal(foreign.status, 403);
    assert.deepEqual(foreign.json, { jsonrpc: '2.0', error: { code: -32000, message: 'Forbidden: Host "attacker.example" is not allowed (HTTP_ALLOWED_HOSTS)', data: { code: 'forbidden' } }, id: null });
    const crossSite = await send(app.url, 'POST', '/mcp/any', { ...accept, 'sec-fetch-site': 'cross-site' }, init);
    assert.equal(crossSite.status, 403, crossSite.text);
    const v6 = await send(app.url, 'POST', '/mcp', { ...accept, host: `[::1]:${new URL(app.url).port}`, origin: `http://[::1]:${new URL(app.url).port}` }, init);
    assert.equal(v6.status, 200, v6.text);
  });

  it('with HTTP_DNS_REBINDING_PROTECTION=false any Host passes, but an unsafe browser request still needs an allowed or same-origin Origin', async () => {
    const lan = `192.168.1.20:${new URL(loose.url).port}`;
    assert.equal((await send(loose.url, 'GET', '/api/v1/servers', { host: lan })).status, 200);
    assert.equal((await send(loose.url, 'GET', '/api/v1/servers', { host: lan, origin: 'https://evil.example' })).status, 200, 'safe methods are not checked');
    const csrf = await send(loose.url, 'POST', '/api/v1/servers', { host: lan, origin: 'https://evil.example' }, dropper('loose-csrf'));
    assert.equal(csrf.status, 403, csrf.text);
    assert.match(errorOf(csrf)?.message ?? '', /Origin "https:\/\/evil\.example" is not allowed/);
    assert.equal((await send(loose.url, 'POST', '/api/v1/servers', { host: lan, 'sec-fetch-site': 'cross-site' }, dropper('loose-site'))).status, 403);
    const sameOrigin = await send(loose.url, 'DELETE', '/api/v1/servers/curl', { host: lan, origin: `http://${lan}`, 'sec-fetch-site': 'same-origin' });
    assert.equal(sameOrigin.status, 204, sameOrigin.text);
    // Malformed stays malformed.
    assert.equal((await rawRequest(loose.url, 'GET /api/v1/servers HTTP/1.1\r\nHost: a b\r\n')).status, 400);
    assert.equal(existsSync(marker), false);
  });
});
