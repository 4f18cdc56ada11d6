import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { SignJWT } from 'jose';
import { JwtVerifier } from '../../src/auth/jwt-verifier.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { LocalIssuer, hsToken } from '../support/identity.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

/**
 * Issue 10, credentials: token audience bound to the resource the request targets (RFC 8707,
 * MCP authorization spec "Token Audience Binding and Validation"), `exp` required and `iat` not
 * in the future, and ambiguous credentials refused. Real PostgreSQL, real HTTP, tokens signed
 * with jose (HS256 for `bearer`, RS256 from a local issuer for `oauth2`).
 */

const SECRET = 'creds-test-secret-that-is-long-enough-0123';
const STATIC_KEY = 'creds-static-bootstrap-key-0123456789';
const PUBLIC = 'https://gw.example.com';
const MCP_HEADERS = { accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', 'content-type': 'application/json' };
const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'creds', version: '1' } } };

interface Reply {
  status: number;
  challenge: string;
  body: { error?: { code: string; message: string } | { code: number; message: string }; method?: string; id?: string };
}

/** A request to `path`; POST `/mcp…` paths get an `initialize`. */
async function call(app: TestApp, path: string, headers: Record<string, string>): Promise<Reply> {
  const mcp = path.startsWith('/mcp');
  const res = await fetch(`${app.url}${path}`, {
    method: mcp ? 'POST' : 'GET',
    headers: mcp ? { ...MCP_HEADERS, ...headers } : headers,
    body: mcp ? JSON.stringify(initialize) : undefined,
  });
  let text = await res.text();
  if (res.headers.get('content-type')?.startsWith('text/event-stream')) text = /^data: (.*)$/m.exec(text)?.[1] ?? '';
  return { status: res.status, challenge: res.headers.get('www-authenticate') ?? '', body: (text ? JSON.parse(text) : {}) as Reply['body'] };
}

/** Raw HTTP, so a header can be sent twice (fetch joins repeated headers into one). */
function rawGet(app: TestApp, path: string, headers: Record<string, string | string[]>): Promise<{ status: number; challenge: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${app.url}${path}`, { headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, challenge: String(res.headers['www-authenticate'] ?? ''), body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

describe('credentials: token audience, expiry, ambiguity', () => {
  let db: TestDatabase;
  let app: TestApp;
  let oauth: LocalIssuer;
  const admin = { 'x-api-key': STATIC_KEY };
  const hs = (claims: Record<string, unknown>, options: Parameters<typeof hsToken>[2] = {}) => hsToken(SECRET, { sub: 'alice', ...claims }, options);

  before(async () => {
    db = await createTestDatabase();
    oauth = await LocalIssuer.start();
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'bearer,oauth2,api_key',
      MCP_JWT_SECRET: SECRET,
      MCP_OAUTH_ISSUER: oauth.url,
      MCP_API_KEYS: STATIC_KEY,
      PUBLIC_URL: PUBLIC,
      HTTP_ALLOWED_HOSTS: '127.0.0.1,localhost',
    });
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { ...admin, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'github', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
    });
    assert.equal(res.status, 201, await res.text());
    await eventually('connected', async () => {
      const s = (await (await fetch(`${app.url}/api/v1/servers/github`, { headers: admin })).json()) as { status: { state: string } };
      return s.status.state === 'connected' ? true : undefined;
    });
  });
  after(async () => {
    await app.shutdown('test done');
    await oauth.close();
    await db.drop();
  });

  /** Asserts a 401 invalid_token whose challenge names `resource` and points at its metadata. */
  function refusedFor(reply: Reply, resource: string, what: string): void {
    assert.equal(reply.status, 401, `${what}: ${JSON.stringify(reply.body)}`);
    assert.match(reply.challenge, /error="invalid_token"/, what);
    assert.ok(reply.challenge.includes(`error_description="the token is not meant for ${resource} (audience)"`), `${what}: ${reply.challenge}`);
    assert.ok(reply.challenge.includes(`resource_metadata="${PUBLIC}/.well-known/oauth-protected-resource${resource.slice(PUBLIC.length)}"`), `${what}: ${reply.challenge}`);
  }

  it('refuses a token for PUBLIC_URL/mcp/github on /mcp, on /mcp/<other> and on the admin API (oauth2 and bearer)', async () => {
    for (const [strategy, token] of [
      ['oauth2', await oauth.sign({ sub: 'o-github', aud: `${PUBLIC}/mcp/github` })],
      ['bearer', await hs({ aud: `${PUBLIC}/mcp/github` })],
    ] as const) {
      refusedFor(await call(app, '/mcp', bearer(token)), `${PUBLIC}/mcp`, `${strategy} on /mcp`);
      refusedFor(await call(app, '/mcp/other', bearer(token)), `${PUBLIC}/mcp/other`, `${strategy} on /mcp/other`);
      refusedFor(await call(app, '/api/v1/me', bearer(token)), `${PUBLIC}/api`, `${strategy} on /api/v1/me`);
      refusedFor(await call(app, '/api/v1/servers', bearer(token)), `${PUBLIC}/api`, `${strategy} on /api/v1/servers`);
      refusedFor(await call(app, '/api/v1/api-keys', bearer(token)), `${PUBLIC}/api`, `${strategy} on /api/v1/api-keys`);
      // Where it belongs it works, with the official client.
      const client = new Client({ name: `creds-${strategy}`, version: '1' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/github`), { requestInit: { headers: bearer(token) } }));
      assert.ok((await client.listTools()).tools.some((t) => t.name === 'echo'), `${strategy}: its own server's tools`);
      await client.close();
    }
  });

  it('gives the admin API its own audience, PUBLIC_URL/api, and lets a PUBLIC_URL/mcp token use every MCP endpoint but not the admin API', async () => {
    const apiToken = await oauth.sign({ sub: 'o-admin', aud: `${PUBLIC}/api` });
    assert.equal((await call(app, '/api/v1/me', bearer(apiToken))).status, 200);
    refusedFor(await call(app, '/mcp', bearer(apiToken)), `${PUBLIC}/mcp`, 'an admin API token on /mcp');
    const prm = (await (await fetch(`${app.url}/.well-known/oauth-protected-resource/api`)).json()) as { resource: string; authorization_servers: string[] };
    assert.equal(prm.resource, `${PUBLIC}/api`);
    assert.deepEqual(prm.authorization_servers, [oauth.url]);

    const mcpToken = await oauth.sign({ sub: 'o-mcp', aud: `${PUBLIC}/mcp/` }); // trailing slash: the same resource
    assert.equal((await call(app, '/mcp', bearer(mcpToken))).status, 200);
    assert.equal((await call(app, '/mcp/github', bearer(mcpToken))).status, 200, 'the whole gateway includes each server');
    refusedFor(await call(app, '/api/v1/me', bearer(mcpToken)), `${PUBLIC}/api`, 'an MCP token on the admin API');
    // Percent-encoding does not dodge the binding.
    assert.equal((await call(app, '/mcp/%67ithub', bearer(await oauth.sign({ sub: 'o-enc', aud: `${PUBLIC}/mcp/github` })))).status, 200);
  });

  it('bearer without MCP_JWT_AUDIENCE: a token without aud is accepted, one naming something else is refused (RFC 7519 §4.1.3)', async () => {
    assert.equal((await call(app, '/api/v1/me', bearer(await hs({})))).status, 200);
    assert.equal((await call(app, '/mcp', bearer(await hs({})))).status, 200);
    const foreign = await call(app, '/api/v1/me', bearer(await hs({ sub: 'stranger', aud: 'https://other.example.com/api' })));
    assert.equal(foreign.status, 401);
    assert.match(foreign.challenge, /error="invalid_token", error_description="the token is not meant for this gateway \(audience\)"/);
    assert.equal((await db.query('SELECT 1 FROM users WHERE subject = $1', ['stranger'])).length, 0, 'no user is created for a token meant for someone else');
  });

  it('refuses JWTs without exp, and with an iat in the future beyond the clock tolerance', async () => {
    const now = Math.floor(Date.now() / 1000);
    const sign = (claims: Record<string, unknown>) => new SignJWT({ sub: 'timey', ...claims }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).sign(new TextEncoder().encode(SECRET));
    const noExp = await call(app, '/api/v1/me', bearer(await sign({ iat: now })));
    assert.equal(noExp.status, 401);
    assert.match(noExp.challenge, /error="invalid_token", error_description="the token has no expiry \(exp claim\)"/);
    // LocalIssuer always sets exp: sign one without it directly with jose.
    const rs = oauth.keys.get('rs-1')!;
    const rsNoExp = await new SignJWT({ sub: 'o-noexp', aud: `${PUBLIC}/mcp` }).setProtectedHeader({ alg: 'RS256', kid: 'rs-1' }).setIssuer(oauth.url).setIssuedAt().sign(rs.pair.privateKey);
    const oauthNoExp = await call(app, '/mcp', bearer(rsNoExp));
    assert.equal(oauthNoExp.status, 401, 'oauth2 too');
    assert.match(oauthNoExp.challenge, /no expiry/);

    const future = await call(app, '/api/v1/me', bearer(await sign({ iat: now + 120, exp: now + 600 })));
    assert.equal(future.status, 401);
    assert.match(future.challenge, /"iat" is in the future|iat.{0,4} is in the future/);
    assert.equal((await call(app, '/api/v1/me', bearer(await sign({ iat: now + 10, exp: now + 600 })))).status, 200, 'within MCP_JWT_CLOCK_TOLERANCE (30 s)');
  });

  it('MCP_JWT_REQUIRE_EXP=false lets a token without exp through the verifier; the default refuses it', async () => {
    const token = await new SignJWT({ sub: 'forever' }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().sign(new TextEncoder().encode(SECRET));
    const lenient = new JwtVerifier({ secret: SECRET, algorithms: ['HS256'], clockToleranceSec: 30, requireExp: false });
    assert.equal((await lenient.verify(token)).sub, 'forever');
    const strict = new JwtVerifier({ secret: SECRET, algorithms: ['HS256'], clockToleranceSec: 30 });
    await assert.rejects(strict.verify(token), /no expiry/);
  });

  it('refuses ambiguous credentials with 400 invalid_request: two Authorization headers, or X-API-Key and Authorization naming different principals', async () => {
    const alice = await hs({ sub: 'alice' });
    const bob = await hs({ sub: 'bob' });
    const twice = await rawGet(app, '/api/v1/me', { authorization: [`Bearer ${alice}`, `Bearer ${bob}`] });
    assert.equal(twice.status, 400, twice.body);
    assert.match(twice.challenge, /error="invalid_request"/);
    assert.match(twice.body, /more than one Authorization header/);
    const twoKeys = await rawGet(app, '/api/v1/me', { 'x-api-key': [STATIC_KEY, 'another-key-0123456789abcdef'] });
    assert.equal(twoKeys.status, 400, twoKeys.body);

    const mixed = await call(app, '/api/v1/me', { ...admin, ...bearer(alice) });
    assert.equal(mixed.status, 400, JSON.stringify(mixed.body));
    assert.match(mixed.challenge, /error="invalid_request"/);
    assert.match((mixed.body.error as { message: string }).message, /X-API-Key and Authorization name different principals/);
    const mcpMixed = await call(app, '/mcp', { ...admin, ...bearer(alice) });
    assert.equal(mcpMixed.status, 400, 'on /mcp too');

    // The same principal in both is not ambiguous; neither is a non-Bearer Authorization (a proxy's) beside X-API-Key.
    const same = await call(app, '/api/v1/me', { ...admin, ...bearer(STATIC_KEY) });
    assert.equal(same.status, 200);
    assert.equal(same.body.method, 'api_key');
    assert.equal((await call(app, '/api/v1/me', { ...admin, authorization: 'Basic cHJveHk6cGFzcw==' })).status, 200);
    // One bad credential of the two is a 401, whichever it is.
    assert.equal((await call(app, '/api/v1/me', { 'x-api-key': 'gatehouse_' + 'B'.repeat(43), ...bearer(alice) })).status, 401);
  });
});
