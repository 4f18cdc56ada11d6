import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { jwtVerify } from 'jose';
import { Client, StreamableHTTPClientTransport, refreshAuthorization } from '@modelcontextprotocol/client';
import { apiCaller, type ApiReply } from '../support/api-call.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { findLeaks } from '../support/leaks.js';
import { startOAuthUpstream, type MintedTokens, type OAuthUpstream } from '../support/oauth-upstream.js';
import { eventually } from '../support/upstreams.js';
import { UpstreamPoolService } from '../../src/upstreams/upstream-pool.service.js';
import { rememberSubjectToken } from '../../src/auth/subject-token.js';
import type { Principal } from '../../src/auth/principal.js';
import { TokenExchangeService } from '../../src/upstream-oauth/token-exchange.service.js';

const JWT_SECRET = 'upstream-oauth-test-jwt-secret-0123456789';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;

type Reply = ApiReply<Record<string, unknown> & { error?: { code: string; message: string }; items?: Record<string, unknown>[] }>;

/** A port nothing listens on (a token endpoint that refuses connections: a transient failure). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('per-user upstream OAuth connections (issue 14): stored tokens, refresh, isolation, step-up', () => {
  let db: TestDatabase;
  let app: TestApp;
  let replica: TestApp;
  let upstream: OAuthUpstream;
  const admin = { 'x-api-key': ADMIN_KEY };
  const env = {
    MCP_AUTH_STRATEGY: 'bearer,api_key',
    MCP_JWT_SECRET: JWT_SECRET,
    MCP_API_KEYS: ADMIN_KEY,
    LOG_LEVEL: 'debug',
    GATEHOUSE_UPSTREAM_OAUTH_FETCH_ALLOW_PRIVATE: 'true',
  };
  const users: Record<string, Record<string, string>> = {};
  /** Every upstream token and client secret this file handles: none may appear anywhere Gatehouse writes. */
  const secrets: Record<string, string> = {};
  const apiBodies: string[] = [];
  const toolTexts: string[] = [];
  const minted: Record<string, MintedTokens> = {};

  const call = apiCaller<Reply['json']>(() => app.url, apiBodies);

  /** One MCP client per (user, app), connected once (concurrent first uses share it). */
  const clients = new Map<string, Promise<Client>>();
  function clientFor(who: string, on: TestApp = app): Promise<Client> {
    const k = `${who}@${on.url}`;
    let client = clients.get(k);
    if (!client) {
      const c = new Client({ name: 'uoauth-test', version: '1' });
      client = c.connect(new StreamableHTTPClientTransport(new URL(`${on.url}/mcp`), { requestInit: { headers: users[who] } })).then(() => c);
      clients.set(k, client);
    }
    return client;
  }

  async function tool(who: string, name: string, on: TestApp = app): Promise<{ text: string; isError: boolean }> {
    const client = await clientFor(who, on);
    const result = await client.callTool({ name, arguments: {} });
    const text = (result.content as { type: string; text: string }[]).map((c) => c.text).join('\n');
    toolTexts.push(text);
    return { text, isError: result.isError === true };
  }

  const whoami = async (who: string, on: TestApp = app) => {
    const r = await tool(who, 'linear__whoami', on);
    assert.equal(r.isError, false, r.text);
    return JSON.parse(r.text) as { sub: string; scopes: string[] };
  };

  /** Stores `tokens` as `who`'s own connection (the stored-token API), Gatehouse told they expire in `expiresIn` s. */
  async function connect(who: string, tokens: MintedTokens, expiresIn = tokens.expires_in, extra: Record<string, unknown> = {}): Promise<Reply> {
    secrets[`${who} access ${Object.keys(secrets).length}`] = tokens.access_token;
    if (tokens.refresh_token) secrets[`${who} refresh ${Object.keys(secrets).length}`] = tokens.refresh_token;
    return call('/api/v1/me/connections/linear', {
      method: 'PUT',
      headers: users[who],
      body: {
        accessToken: tokens.access_token,
        refreshToken: tokens.refresh_token,
        expiresIn,
        scopes: tokens.scope,
        account: who,
        issuer: upstream.issuer,
        tokenEndpoint: upstream.tokenEndpoint,
        revocationEndpoint: upstream.revocationEndpoint,
        clientId: upstream.clientId,
        clientSecret: upstream.clientSecret,
        resource: upstream.mcpUrl,
        ...extra,
      },
    });
  }

  before(async () => {
    db = await createTestDatabase();
    upstream = await startOAuthUpstream({
      refreshDelayMs: 200,
      // Token exchange: the subject token is the caller's Gatehouse JWT.
      verifySubjectToken: async (token) => ({ sub: String((await jwtVerify(token, new TextEncoder().encode(JWT_SECRET))).payload.sub) }),
    });
    secrets.clientSecret = upstream.clientSecret;
    app = await startTestApp(db.url, env);
    for (const who of ['alice', 'bob', 'carol', 'dave']) users[who] = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: who, email: `${who}@example.com` })}` };
    const created = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'linear', transport: 'streamable_http', url: upstream.mcpUrl, oauth: { mode: 'user', scopes: ['read', 'write'] } } });
    assert.equal(created.status, 201, created.text);
    assert.deepEqual((created.json as { oauth: unknown }).oauth, { mode: 'user', scopes: ['read', 'write'] });
    replica = await startTestApp(db.url, env);
  });

  after(async () => {
    for (const client of clients.values()) await (await client).close().catch(() => undefined);
    await replica?.shutdown('test done');
    await app?.shutdown('test done');
    await upstream?.close();
    await db?.drop();
  });

  it('validates the server field oauth and the stored-token body, naming each field and never echoing a token', async () => {
    let r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'bad-oauth', transport: 'stdio', command: 'x', oauth: { mode: 'user' } } });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /oauth: only for HTTP transports/);
    r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'bad-oauth', transport: 'streamable_http', url: upstream.mcpUrl, oauth: { mode: 'token_exchange' } } });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /oauth\.tokenExchange: required when mode is token_exchange/);
    r = await call('/api/v1/servers', { method: 'POST', headers: admin, body: { name: 'bad-oauth', transport: 'streamable_http', url: upstream.mcpUrl, headers: { Authorization: 'Bearer x' }, oauth: { mode: 'user' } } });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /headers\.Authorization: is set by Gatehouse/);

    const secretLooking = `tok en-${randomBytes(8).toString('hex')}`;
    r = await call('/api/v1/me/connections/linear', { method: 'PUT', headers: users.alice, body: { accessToken: secretLooking, refreshToken: 'r', expiresIn: -1 } });
    assert.equal(r.status, 400);
    assert.match(r.json.error!.message, /accessToken: expected an access token of printable ASCII/);
    assert.match(r.json.error!.message, /expiresIn: expected 1 second or more/);
    assert.match(r.json.error!.message, /tokenEndpoint: required with refreshToken/);
    assert.match(r.json.error!.message, /clientId: required with refreshToken/);
    assert.ok(!r.text.includes(secretLooking.slice(4)), 'the token is not echoed');
    r = await call('/api/v1/me/connections/nope', { method: 'PUT', headers: users.alice, body: { accessToken: 'abc' } });
    assert.equal(r.status, 404);
    assert.equal((await call('/api/v1/me/connections/linear', { method: 'PUT', body: { accessToken: 'abc' } })).status, 401);
    assert.equal((await call('/api/v1/servers/linear/connection', { method: 'PUT', headers: users.alice, body: { accessToken: 'abc' } })).status, 403, 'members cannot set the shared connection');
  });

  it("calls the upstream with each user's own token; a caller without one is told how to connect", async () => {
    minted.alice = await upstream.mintTokens('alice');
    const stored = await connect('alice', minted.alice);
    assert.equal(stored.status, 200, stored.text);
    assert.equal(stored.json.shared, false);
    assert.equal(stored.json.status, 'active');
    assert.deepEqual(stored.json.scopes, ['read', 'write']);
    assert.ok(!('accessToken' in stored.json) && !stored.text.includes(minted.alice.access_token));

    // Alice's list lists through her connection (the shared, token-less one is refused).
    await eventually('linear tools listed through alice', async () => {
      const tools = await (await clientFor('alice')).listTools();
      return tools.tools.some((t) => t.name === 'linear__whoami') ? true : undefined;
    });
    assert.equal((await whoami('alice')).sub, 'alice');

    const bob = await tool('bob', 'linear__whoami');
    assert.equal(bob.isError, true);
    assert.match(bob.text, /You have not connected your account for server "linear": connect your account at http:\/\/localhost:\d+\/connect\/linear \(or store a token with PUT http:\/\/localhost:\d+\/api\/v1\/me\/connections\/linear\)/);

    const rows = await db.query<{ owner: string; access_token_sealed: string; refresh_token_sealed: string }>('SELECT owner, access_token_sealed, refresh_token_sealed FROM upstream_oauth_connections');
    assert.equal(rows.length, 1);
    assert.ok(!JSON.stringify(rows).includes(minted.alice.access_token) && !JSON.stringify(rows).includes(minted.alice.refresh_token!), 'only sealed values are stored');
  });

  it("uses the admin's shared connection only for callers without their own, and lists it as shared", async () => {
    const svc = await upstream.mintTokens('svc');
    secrets.svcAccess = svc.access_token;
    secrets.svcRefresh = svc.refresh_token!;
    const r = await call('/api/v1/servers/linear/connection', {
      method: 'PUT',
      headers: admin,
      body: { accessToken: svc.access_token, refreshToken: svc.refresh_token, expiresIn: 3600, scopes: 'read write', tokenEndpoint: upstream.tokenEndpoint, clientId: upstream.clientId, clientSecret: upstream.clientSecret, account: 'svc' },
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.shared, true);
    assert.equal((await whoami('bob')).sub, 'svc');
    assert.equal((await whoami('alice')).sub, 'alice', 'her own wins');
    const bobList = await call('/api/v1/me/connections', { headers: users.bob });
    assert.deepEqual(bobList.json.items!.map((i) => [i.server, i.shared, i.account]), [['linear', true, 'svc']]);
    const aliceList = await call('/api/v1/me/connections', { headers: users.alice });
    assert.deepEqual(aliceList.json.items!.map((i) => [i.server, i.shared, i.account]), [['linear', false, 'alice']]);
    const shared = await call('/api/v1/servers/linear/connection', { headers: admin });
    assert.equal(shared.json.account, 'svc');
    const removed = await call('/api/v1/servers/linear/connection', { method: 'DELETE', headers: admin });
    assert.equal(removed.status, 200);
    assert.equal((await tool('bob', 'linear__whoami')).isError, true, 'back to asking bob to connect');
  });

  it('refreshes ahead of expiry exactly once under 20 concurrent calls on two replicas, and every call uses the result', async () => {
    const before = upstream.refreshes;
    // Gatehouse is told the token expires in 1 s: inside the 60 s skew, so the next calls refresh.
    assert.equal((await connect('alice', minted.alice, 1)).status, 200);
    await eventually('linear listed on the replica', async () => ((await (await clientFor('alice', replica)).listTools()).tools.some((t) => t.name === 'linear__whoami') ? true : undefined));
    const calls = Array.from({ length: 20 }, (_, i) => whoami('alice', i % 2 === 0 ? app : replica));
    const results = await Promise.all(calls);
    assert.deepEqual(new Set(results.map((r) => r.sub)), new Set(['alice']));
    assert.equal(upstream.refreshes - before, 1, 'one refresh at the provider');
    assert.equal(upstream.refreshFailures, 0, 'no call raced a rotated refresh token');
    const view = (await call('/api/v1/me/connections', { headers: users.alice })).json.items![0];
    assert.ok(Date.parse(view.expiresAt as string) > Date.now() + 3000_000, 'the refreshed expiry is stored');
    // A later call uses the stored refreshed token: no second refresh.
    assert.equal((await whoami('alice', replica)).sub, 'alice');
    assert.equal(upstream.refreshes - before, 1);
  });

  it('a refresh the provider rejects (invalid_grant) marks the connection needs_reauth; the next call asks to reconnect', async () => {
    minted.carol = await upstream.mintTokens('carol');
    assert.equal((await connect('carol', minted.carol, 1)).status, 200);
    await upstream.revokeGrantsOf('carol');
    const r = await tool('carol', 'linear__whoami');
    assert.equal(r.isError, true);
    assert.match(r.text, /Your connection to server "linear" must be renewed \(the token refresh was refused by the provider \(invalid_grant/);
    assert.match(r.text, /\/connect\/linear/);
    const view = (await call('/api/v1/me/connections', { headers: users.carol })).json.items![0];
    assert.equal(view.status, 'needs_reauth');
    assert.match(view.statusReason as string, /invalid_grant/);
    const failures = upstream.refreshFailures;
    const again = await tool('carol', 'linear__whoami', replica);
    assert.match(again.text, /must be renewed/);
    assert.equal(upstream.refreshFailures, failures, 'no second attempt at the provider');
  });

  it('a transient refresh failure (token endpoint unreachable) reports a failure and keeps the connection active', async () => {
    const tokens = await upstream.mintTokens('dave');
    assert.equal((await connect('dave', tokens, 1, { tokenEndpoint: `http://127.0.0.1:${await closedPort()}/token` })).status, 200);
    const r = await tool('dave', 'linear__whoami');
    assert.equal(r.isError, true);
    assert.match(r.text, /Upstream MCP server "linear": the token refresh failed: .*try again/);
    const view = (await call('/api/v1/me/connections', { headers: users.dave })).json.items![0];
    assert.equal(view.status, 'active');
  });

  it('an upstream 401 on a token that looked valid refreshes once and retries the call (it did not run)', async () => {
    await new Promise((r) => setTimeout(r, 1100));
    const before = upstream.refreshes;
    const seen = upstream.seen.length;
    upstream.rejectIssuedBefore = Math.floor(Date.now() / 1000);
    try {
      assert.equal((await whoami('alice')).sub, 'alice');
      assert.equal(upstream.refreshes - before, 1);
      const statuses = upstream.seen.slice(seen).map((s) => s.status);
      assert.ok(statuses.includes(401), `the upstream refused the old token first: ${statuses.join(',')}`);
    } finally {
      upstream.rejectIssuedBefore = 0;
    }
  });

  it('a 403 insufficient_scope asks for the union of scopes, and the same ask twice is an error naming them (no loop)', async () => {
    const r = await tool('alice', 'linear__admin_op');
    assert.equal(r.isError, true);
    assert.match(r.text, /Server "linear" needs more access than your connection grants \(scopes: admin read write\)/);
    assert.match(r.text, /\/connect\/linear/);
    // The user "reconnects" without getting the admin scope: the same union would be asked again.
    assert.equal((await connect('alice', await upstream.mintTokens('alice'))).status, 200);
    const again = await tool('alice', 'linear__admin_op');
    assert.equal(again.isError, true);
    assert.match(again.text, /still refuses the call for want of scopes after you granted admin read write/);
    // With the scope granted, it works.
    assert.equal((await connect('alice', await upstream.mintTokens('alice', ['read', 'write', 'admin']))).status, 200);
    const ok = await tool('alice', 'linear__admin_op');
    assert.equal(ok.isError, false, ok.text);
    assert.equal(ok.text, 'admin done as alice');
  });

  it('two users interleaved at high concurrency never see each other, and each pooled connection carries one user', async () => {
    minted.bob = await upstream.mintTokens('bob');
    assert.equal((await connect('bob', minted.bob)).status, 200);
    const order = Array.from({ length: 400 }, (_, i) => (i % 2 === 0 ? 'alice' : 'bob'));
    const results = await Promise.all(order.map(async (who, i) => ({ who, sub: (await whoami(who, i % 3 === 0 ? replica : app)).sub })));
    const crossed = results.filter((r) => r.who !== r.sub);
    assert.deepEqual(crossed, [], 'no call ran with the other user’s token');
    const pool = app.app.get(UpstreamPoolService);
    const live = pool.connectionsOf('linear').filter((c) => c.state === 'connected');
    const tokensPerConnection = live.map((c) => c.server.headers.Authorization);
    assert.ok(tokensPerConnection.every((t) => typeof t === 'string' && t.startsWith('Bearer ')), 'each pooled connection sends one bearer token');
    assert.equal(new Set(tokensPerConnection).size, tokensPerConnection.length, 'no two connections share a token');
  });

  it('DELETE revokes the refresh token at the provider (RFC 7009) and removes the connection; a failing revocation removes it anyway and says so', async () => {
    const tokens = await upstream.mintTokens('bob');
    assert.equal((await connect('bob', tokens)).status, 200);
    const r = await call('/api/v1/me/connections/linear', { method: 'DELETE', headers: users.bob });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { revocation: 'revoked' });
    await assert.rejects(
      refreshAuthorization(upstream.issuer, {
        metadata: { issuer: upstream.issuer, token_endpoint: upstream.tokenEndpoint, authorization_endpoint: upstream.tokenEndpoint, response_types_supported: ['code'], token_endpoint_auth_methods_supported: ['client_secret_basic'] },
        clientInformation: { client_id: upstream.clientId, client_secret: upstream.clientSecret },
        refreshToken: tokens.refresh_token!,
      }),
      /invalid_grant|grant request is invalid/,
    );
    assert.equal((await call('/api/v1/me/connections', { headers: users.bob })).json.items!.length, 0);

    assert.equal((await connect('bob', await upstream.mintTokens('bob'), 3600, { revocationEndpoint: `http://127.0.0.1:${await closedPort()}/revoke` })).status, 200);
    const failed = await call('/api/v1/me/connections/linear', { method: 'DELETE', headers: users.bob });
    assert.equal(failed.status, 200);
    assert.equal(failed.json.revocation, 'failed');
    assert.match(failed.json.detail as string, /the revocation failed/);
    assert.equal((await call('/api/v1/me/connections', { headers: users.bob })).json.items!.length, 0);
    assert.equal((await call('/api/v1/me/connections/linear', { method: 'DELETE', headers: users.bob })).status, 404);
  });

  it("token exchange (RFC 8693): the caller's own token is exchanged for one bound to the upstream, cached until near expiry", async () => {
    assert.equal((await call('/api/v1/servers/tx/secrets/TX_CLIENT_SECRET', { method: 'PUT', headers: admin, body: { value: upstream.clientSecret } }, app)).status, 404, 'no server yet');
    const created = await call('/api/v1/servers', {
      method: 'POST',
      headers: admin,
      body: {
        name: 'tx',
        transport: 'streamable_http',
        url: upstream.mcpUrl,
        oauth: { mode: 'token_exchange', clientId: upstream.clientId, clientSecret: '${secret:TX_CLIENT_SECRET}', tokenExchange: { tokenEndpoint: upstream.tokenEndpoint, audience: upstream.mcpUrl, scope: 'read' } },
      },
    });
    assert.equal(created.status, 201, created.text);
    assert.equal((created.json as { oauth: { clientSecret: string } }).oauth.clientSecret, '${secret:TX_CLIENT_SECRET}', 'a placeholder is shown; it names no value');
    assert.equal((await call('/api/v1/servers/tx/secrets/TX_CLIENT_SECRET', { method: 'PUT', headers: admin, body: { value: upstream.clientSecret } })).status, 204);
    const before = upstream.exchanges;
    await eventually('tx listed through dave', async () => ((await (await clientFor('dave')).listTools()).tools.some((t) => t.name === 'tx__whoami') ? true : undefined));
    const first = await tool('dave', 'tx__whoami');
    assert.equal(first.isError, false, first.text);
    assert.deepEqual(JSON.parse(first.text), { sub: 'dave', scopes: ['read'], clientId: upstream.clientId });
    const second = await tool('dave', 'tx__whoami');
    assert.equal((JSON.parse(second.text) as { sub: string }).sub, 'dave');
    assert.equal(upstream.exchanges - before, 1, 'one exchange for the listing and both calls: the exchanged token is reused');
    const bob = await tool('bob', 'tx__whoami');
    assert.equal((JSON.parse(bob.text) as { sub: string }).sub, 'bob', 'each caller exchanges their own token');

    // An API key cannot be exchanged: said plainly.
    const keyClient = new Client({ name: 'uoauth-key', version: '1' });
    await keyClient.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: admin } }));
    try {
      const r = await keyClient.callTool({ name: 'tx__whoami', arguments: {} });
      assert.equal(r.isError, true);
      assert.match((r.content as { text: string }[])[0].text, /Server "tx" is called with your own token exchanged .*not an API key/);
    } finally {
      await keyClient.close();
    }

    // A refused exchange names the server and the provider's error code.
    const exchange = app.app.get(TokenExchangeService);
    const principal = { userId: 'u1', id: 'bearer:x', displayName: 'x', email: null, roles: [], groups: [], scopes: ['mcp'], method: 'bearer', keyId: null } as Principal;
    rememberSubjectToken(principal, users.dave.authorization.slice('Bearer '.length));
    const refused = await exchange.tokenFor('tx', 'u1', principal, {
      mode: 'token_exchange',
      clientId: upstream.clientId,
      clientSecret: '${secret:TX_CLIENT_SECRET}',
      tokenExchange: { tokenEndpoint: upstream.tokenEndpoint, audience: 'https://elsewhere.example.com' },
    });
    assert.ok('failure' in refused);
    assert.match(refused.failure, /^Token exchange for server "tx" was refused by the provider \(invalid_target: unknown audience\)$/);
    const missing = await exchange.tokenFor('nope', 'u1', principal, { mode: 'token_exchange', clientId: 'c', clientSecret: '${secret:NOPE}', tokenExchange: { tokenEndpoint: upstream.tokenEndpoint } });
    assert.ok('failure' in missing);
    assert.match(missing.failure, /needs the server secret "NOPE" \(oauth\.clientSecret\), which is not set/);
    for (const [i, t] of upstream.exchangedTokens.entries()) secrets[`exchanged ${i}`] = t;
  });

  it('never shows an upstream token or client secret in logs, API answers or tool results, in any encoding', () => {
    for (const [k, v] of Object.entries(minted)) {
      secrets[`${k} access`] = v.access_token;
      if (v.refresh_token) secrets[`${k} refresh`] = v.refresh_token;
    }
    const leaks = findLeaks(secrets, { logs: [app.logs.raw, replica.logs.raw], 'API answers': apiBodies, 'tool results': toolTexts });
    assert.deepEqual(leaks, []);
  });
});
