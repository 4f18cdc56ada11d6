import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Client, StreamableHTTPClientTransport, UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/client';
import type { Browser } from 'playwright-core';
import { startGatehouse, type Gatehouse } from '../../src/bootstrap.js';
import { createRootLogger } from '../../src/common/logging/logger.js';
import { SIGNED_IN_USER_RESOLVER, type SignedInUserSlot } from '../../src/oauth-server/signed-in-user.js';
import { PoliciesService } from '../../src/policies/policies.service.js';
import { UsersService } from '../../src/users/users.service.js';
import { configFrom, LogCapture } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AsClient, claimsOf, consentInBrowser, deviceInBrowser, formPost, freePort, jsonOf, launchChromium, memoryOAuthProvider, pkce, redirectUri, TestSignIn } from '../support/oauth.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

const ADMIN_KEY = 'static-bootstrap-key-0123456789abcdef';
const admin = { 'x-api-key': ADMIN_KEY };

async function start(db: TestDatabase, port: number, publicUrl: string, env: Record<string, string> = {}): Promise<Gatehouse & { logs: LogCapture }> {
  const config = configFrom({
    DATABASE_URL: db.url,
    PORT: String(port),
    PUBLIC_URL: publicUrl,
    MCP_AUTH_STRATEGY: 'oauth2,api_key',
    MCP_API_KEYS: ADMIN_KEY,
    GATEHOUSE_OAUTH_SERVER: 'true',
    ...env,
  });
  const logs = new LogCapture();
  const app = await startGatehouse(config, { logger: await createRootLogger(config, logs.stream) });
  await app.app.get(PoliciesService).whenLoaded();
  app.app.get<SignedInUserSlot>(SIGNED_IN_USER_RESOLVER).use(new TestSignIn());
  return Object.assign(app, { logs });
}

const json = jsonOf;
const form = formPost;
const mcpList = (url: string, accessToken: string) => AsClient.initialize(url, accessToken);

describe('Gatehouse as the OAuth 2.1 authorization server', () => {
  let db: TestDatabase;
  let app: Gatehouse & { logs: LogCapture };
  let base: string;
  let browser: Browser;
  let alice: string;

  before(async () => {
    db = await createTestDatabase();
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    app = await start(db, port, base);
    browser = await launchChromium();
    alice = (await app.app.get(UsersService).resolve({ issuer: 'test-idp', subject: 'alice', email: 'alice@example.com', displayName: 'Alice', groups: [] })).id;
    const res = await fetch(`${base}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...admin },
      body: JSON.stringify({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
    });
    assert.equal(res.status, 201, await res.text());
    await eventually('connected', async () => ((await json(await fetch(`${base}/api/v1/servers/everything`, { headers: admin }))).status as { state: string }).state === 'connected' || undefined);
  });

  after(async () => {
    await browser?.close();
    await app?.shutdown('test');
    await db?.drop();
  });

  const register = (metadata: Record<string, unknown>) => new AsClient(base).register(metadata);
  const authorizeUrl = (clientId: string, redirectUri: string, challenge: string | undefined, extra: Record<string, string> = {}) => new AsClient(base).authorizeUrl(clientId, redirectUri, challenge, extra);

  async function codeFor(clientId: string, redirect: string, extra: Record<string, string> = {}) {
    const { verifier, challenge } = pkce();
    const { params } = await consentInBrowser(browser, base, alice, authorizeUrl(clientId, redirect, challenge, extra), redirect);
    const code = params.get('code');
    assert.ok(code, `no code: ${params.toString()}`);
    assert.equal(params.get('iss'), base, 'RFC 9207 iss');
    return { code, verifier };
  }

  const token = (params: Record<string, string>) => new AsClient(base).token(params);

  it('publishes RFC 8414 metadata with S256, none, metadata documents and RFC 9207; CORS on metadata, token and register; the RFC 9728 metadata names Gatehouse', async () => {
    const res = await fetch(`${base}/.well-known/oauth-authorization-server`, { headers: { origin: 'https://claude.ai' } });
    const md = await json(res);
    assert.equal(res.status, 200, JSON.stringify(md));
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    assert.equal(md.issuer, base);
    assert.deepEqual(md.code_challenge_methods_supported, ['S256']);
    assert.ok((md.token_endpoint_auth_methods_supported as string[]).includes('none'));
    assert.ok((md.token_endpoint_auth_methods_supported as string[]).includes('private_key_jwt'));
    assert.equal(md.client_id_metadata_document_supported, true);
    assert.equal(md.authorization_response_iss_parameter_supported, true);
    assert.equal(md.registration_endpoint, `${base}/oauth/register`);
    assert.equal(md.revocation_endpoint, `${base}/oauth/revoke`);
    assert.equal(md.device_authorization_endpoint, `${base}/oauth/device_authorization`);
    const oidc = await json(await fetch(`${base}/.well-known/openid-configuration`));
    assert.equal(oidc.issuer, base);
    for (const path of ['/oauth/token', '/oauth/register']) {
      const pre = await fetch(`${base}${path}`, { method: 'OPTIONS', headers: { origin: 'https://claude.ai', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
      assert.equal(pre.status, 204, path);
      assert.equal(pre.headers.get('access-control-allow-origin'), '*', path);
    }
    const cross = await fetch(`${base}/oauth/token`, { ...form({ grant_type: 'authorization_code', code: 'x', client_id: 'nobody' }), headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://claude.ai', 'sec-fetch-site': 'cross-site' } });
    assert.notEqual(cross.status, 403, 'a browser-based client reaches /oauth/token cross-origin');
    assert.equal(cross.headers.get('access-control-allow-origin'), '*');
    const prm = await json(await fetch(`${base}/.well-known/oauth-protected-resource/mcp`));
    assert.deepEqual(prm.authorization_servers, [base]);
  });

  it('an uncredentialed initialize gets 401 with a resource_metadata challenge (MCP_SESSION_AUTH_REQUIRE_FOR_SESSION follows MCP_AUTH_REQUIRE)', async () => {
    const res = await fetch(`${base}/mcp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
    assert.equal(res.status, 401);
    assert.match(res.headers.get('www-authenticate') ?? '', /resource_metadata="http:\/\/127\.0\.0\.1:\d+\/\.well-known\/oauth-protected-resource\/mcp"/);
  });

  it("Cursor: registers cursor:// among several redirect URIs; consent page, code + PKCE, JWT for PUBLIC_URL/mcp that works on /mcp; code replay refused", async () => {
    const redirect = await redirectUri('/cursor/callback');
    const client = await register({ client_name: 'Cursor', redirect_uris: ['cursor://anysphere.cursor-retrieval/oauth/callback', redirect] });
    const { verifier, challenge } = pkce();
    const flow = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, redirect, challenge), redirect, 'approve', { screenshot: 'consent' });
    assert.equal(flow.consentShown, true, 'consent page shown for a dynamically registered client');
    assert.match(flow.pageText, /Cursor/);
    const code = flow.params.get('code')!;
    const t = await token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client.client_id, code_verifier: verifier });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    const payload = JSON.parse(Buffer.from(String(t.body.access_token).split('.')[1], 'base64url').toString()) as Record<string, unknown>;
    assert.equal(payload.aud, `${base}/mcp`);
    assert.equal(payload.sub, alice);
    assert.equal(payload.iss, base);
    const ok = await mcpList(`${base}/mcp`, String(t.body.access_token));
    assert.equal(ok.status, 200, await ok.clone().text());
    const me = await json(await fetch(`${base}/api/v1/me`, { headers: { authorization: `Bearer ${String(t.body.access_token)}` } }));
    assert.ok(me.error, 'a token for PUBLIC_URL/mcp is refused on the admin API (audience)');
    const replay = await token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client.client_id, code_verifier: verifier });
    assert.equal(replay.status, 400);
    assert.equal(replay.body.error, 'invalid_grant');
  });

  it('negative: PKCE missing or plain, redirect URI mismatch, a resource that is not this gateway, consent denied', async () => {
    const redirect = await redirectUri('/negative/cb');
    const client = await register({ client_name: 'Negative', redirect_uris: [redirect] });
    for (const [what, extra] of [
      ['missing', {}],
      ['plain', { code_challenge: 'a'.repeat(43), code_challenge_method: 'plain' }],
    ] as const) {
      const { params } = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, redirect, undefined, extra), redirect, 'none');
      assert.equal(params.get('error'), 'invalid_request', `PKCE ${what}: ${params.toString()}`);
    }
    const mismatch = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, await redirectUri('/negative/other'), pkce().challenge), redirect, 'none');
    assert.equal(mismatch.params.get('code'), null);
    assert.match(mismatch.pageText, /redirect_uri/);
    const foreign = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, redirect, pkce().challenge, { resource: 'https://elsewhere.example/mcp' }), redirect, 'none');
    assert.equal(foreign.params.get('error'), 'invalid_target');
    const denied = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, redirect, pkce().challenge), redirect, 'deny');
    assert.equal(denied.params.get('error'), 'access_denied');
  });

  it('resource with a trailing slash and a single-server resource: audience canonical; a server-scoped token is refused on /mcp', async () => {
    const redirect = await redirectUri('/slash/cb');
    const client = await register({ client_name: 'Slash', redirect_uris: [redirect] });
    const slash = await codeFor(client.client_id, redirect, { resource: `${base}/mcp/` });
    const t1 = await token({ grant_type: 'authorization_code', code: slash.code, redirect_uri: redirect, client_id: client.client_id, code_verifier: slash.verifier, resource: `${base}/mcp/` });
    assert.equal(t1.status, 200, JSON.stringify(t1.body));
    assert.equal((await mcpList(`${base}/mcp`, String(t1.body.access_token))).status, 200);
    const one = await codeFor(client.client_id, redirect, { resource: `${base}/mcp/everything` });
    const t2 = await token({ grant_type: 'authorization_code', code: one.code, redirect_uri: redirect, client_id: client.client_id, code_verifier: one.verifier, resource: `${base}/mcp/everything` });
    assert.equal(t2.status, 200, JSON.stringify(t2.body));
    assert.equal((await mcpList(`${base}/mcp/everything`, String(t2.body.access_token))).status, 200);
    const wrong = await mcpList(`${base}/mcp`, String(t2.body.access_token));
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate') ?? '', /invalid_token/);
  });

  it("Claude Code: a port-less loopback redirect URI matches any port (RFC 8252 §7.3)", async () => {
    const client = await register({ client_name: 'Claude Code', redirect_uris: ['http://localhost/callback'] });
    const loopback = await redirectUri('/callback', 'localhost');
    const { params } = await consentInBrowser(browser, base, alice, authorizeUrl(client.client_id, loopback, pkce().challenge), loopback);
    assert.ok(params.get('code'), params.toString());
  });

  it('refresh tokens rotate; two concurrent refreshes of one token both succeed; a reuse after the grace window revokes the grant', async () => {
    const redirect = await redirectUri('/refresher/cb');
    const client = await register({ client_name: 'Refresher', redirect_uris: [redirect] });
    const { code, verifier } = await codeFor(client.client_id, redirect);
    const t = await token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client.client_id, code_verifier: verifier });
    const rt = String(t.body.refresh_token);
    assert.ok(t.body.refresh_token, JSON.stringify(t.body));
    const [a, b] = await Promise.all([
      token({ grant_type: 'refresh_token', refresh_token: rt, client_id: client.client_id }),
      token({ grant_type: 'refresh_token', refresh_token: rt, client_id: client.client_id }),
    ]);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.equal(b.status, 200, JSON.stringify(b.body));
    assert.notEqual(a.body.refresh_token, rt, 'rotated');
    // The grace window is over (moved back in PostgreSQL rather than waited for).
    await db.query("UPDATE oauth_models SET consumed_at = now() - interval '1 hour' WHERE model = 'RefreshToken' AND consumed_at IS NOT NULL");
    const reuse = await token({ grant_type: 'refresh_token', refresh_token: rt, client_id: client.client_id });
    assert.equal(reuse.status, 400);
    assert.equal(reuse.body.error, 'invalid_grant');
    const after = await token({ grant_type: 'refresh_token', refresh_token: String(a.body.refresh_token), client_id: client.client_id });
    assert.equal(after.status, 400, 'the whole grant is revoked: the newest refresh token fails too');
  });

  it('the SDK v2 client with its OAuth provider connects, lists and calls a tool as the signed-in user', async () => {
    const redirectUrl = await redirectUri('/sdk-v2/callback');
    const memory = memoryOAuthProvider('SDK v2', redirectUrl);
    const provider: OAuthClientProvider = memory.provider;
    const transport = new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { authProvider: provider });
    const client = new Client({ name: 'sdk-v2', version: '1' });
    await assert.rejects(client.connect(transport), UnauthorizedError);
    const authUrl = memory.authorizationUrl();
    assert.ok(authUrl, 'the client was sent to the authorization endpoint');
    const { params } = await consentInBrowser(browser, base, alice, authUrl.href, redirectUrl);
    await transport.finishAuth(params);
    const again = new Client({ name: 'sdk-v2', version: '1' });
    await again.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { authProvider: provider }));
    const tools = await again.listTools();
    assert.ok(tools.tools.some((t) => t.name === 'everything__echo'));
    const result = await again.callTool({ name: 'everything__echo', arguments: { message: 'hi' } });
    assert.match(JSON.stringify(result.content), /hi/);
    await again.close();
    const grants = await json(await fetch(`${base}/api/v1/users/${alice}/grants`, { headers: admin }));
    assert.ok((grants.items as { clientName: string }[]).some((g) => g.clientName === 'SDK v2'));
  });
  /** A device-flow client (RFC 8628), registered dynamically. */
  async function deviceClient(name: string): Promise<{ client_id: string }> {
    return register({ client_name: name, grant_types: ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token'], response_types: [], redirect_uris: [] });
  }

  async function deviceAuthorization(clientId: string): Promise<{ device_code: string; user_code: string; verification_uri: string; interval: number; expires_in: number }> {
    const res = await fetch(`${base}/oauth/device_authorization`, form({ client_id: clientId, scope: 'mcp offline_access', resource: `${base}/mcp` }));
    const body = await json(res);
    assert.equal(res.status, 200, JSON.stringify(body));
    return body as { device_code: string; user_code: string; verification_uri: string; interval: number; expires_in: number };
  }

  /** The client's polling interval (with slow_down's 5 s) passes: the last poll moved back in PostgreSQL rather than waited for. */
  const intervalPasses = () => db.query("UPDATE oauth_models SET payload = jsonb_set(payload, '{at}', to_jsonb((payload->>'at')::float8 - 11)) WHERE model = 'DevicePoll'");

  const poll = (clientId: string, deviceCode: string) => token({ grant_type: 'urn:ietf:params:oauth:grant-type:device_code', device_code: deviceCode, client_id: clientId });

  it('device authorization (RFC 8628): the user types the code at /device in the browser; polling answers authorization_pending, slow_down when too fast, then tokens; MCP call as that user', async () => {
    const client = await deviceClient('Headless agent');
    const started = await deviceAuthorization(client.client_id);
    assert.equal(started.verification_uri, `${base}/device`);
    assert.match(started.user_code, /^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/, '8 letters, base-20');
    assert.ok(started.expires_in > 500 && started.expires_in <= 600, `10 minutes: ${started.expires_in}`);
    const pending = await poll(client.client_id, started.device_code);
    assert.equal(pending.status, 400);
    assert.equal(pending.body.error, 'authorization_pending');
    const tooFast = await poll(client.client_id, started.device_code);
    assert.equal(tooFast.body.error, 'slow_down', 'polled again at once, inside the interval');
    const { finalText, consentText } = await deviceInBrowser(browser, base, alice, started.user_code.toLowerCase().replace('-', ''), 'approve', 'device');
    assert.match(consentText, /Headless agent/);
    assert.match(finalText, /device is connected/);
    await intervalPasses();
    const t = await poll(client.client_id, started.device_code);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.equal(claimsOf(String(t.body.access_token)).sub, alice);
    const mcp = new Client({ name: 'device-agent', version: '1' });
    await mcp.connect(new StreamableHTTPClientTransport(new URL(`${base}/mcp`), { requestInit: { headers: { authorization: `Bearer ${String(t.body.access_token)}` } } }));
    const result = await mcp.callTool({ name: 'everything__echo', arguments: { message: 'from the device' } });
    assert.match(JSON.stringify(result.content), /from the device/);
    await mcp.close();
    await intervalPasses();
    const replay = await poll(client.client_id, started.device_code);
    assert.equal(replay.body.error, 'invalid_grant', 'a device code is used once');
  });

  it('device authorization: a wrong code is refused on the page; an expired device code polls expired_token; a denied one access_denied', async () => {
    const client = await deviceClient('Expiring agent');
    const wrong = await deviceInBrowser(browser, base, alice, 'BCDF-GHJK');
    assert.match(wrong.finalText, /not valid or has expired/);
    const expiring = await deviceAuthorization(client.client_id);
    // Ten minutes and one second pass (the code's own expiry and its row's, moved back together).
    await db.query(
      `UPDATE oauth_models SET payload = jsonb_set(payload, '{exp}', to_jsonb((payload->>'exp')::bigint - 601)), expires_at = expires_at - interval '601 seconds'
       WHERE model = 'DeviceCode' AND client_id = $1`,
      [client.client_id],
    );
    const expired = await poll(client.client_id, expiring.device_code);
    assert.equal(expired.status, 400);
    assert.equal(expired.body.error, 'expired_token', JSON.stringify(expired.body));
    const late = await deviceInBrowser(browser, base, alice, expiring.user_code);
    assert.match(late.finalText, /not valid or has expired/, 'the page refuses an expired code');
    const denied = await deviceAuthorization(client.client_id);
    await deviceInBrowser(browser, base, alice, denied.user_code, 'deny');
    assert.equal((await poll(client.client_id, denied.device_code)).body.error, 'access_denied');
  });
  it("ChatGPT's private_key_jwt: a client registered with its JWKS authenticates at /oauth/token with a signed assertion; a wrong-key assertion is refused", async () => {
    const redirect = await redirectUri('/chatgpt/cb');
    const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
    const wrong = await generateKeyPair('ES256', { extractable: true });
    const jwk = { ...(await exportJWK(publicKey)), kid: 'chatgpt-1', alg: 'ES256', use: 'sig' };
    const client = await register({ client_name: 'ChatGPT', redirect_uris: [redirect], token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'ES256', jwks: { keys: [jwk] } });
    const assertion = (key: Parameters<SignJWT["sign"]>[0]) =>
      new SignJWT({})
        .setProtectedHeader({ alg: 'ES256', kid: 'chatgpt-1' })
        .setIssuer(client.client_id)
        .setSubject(client.client_id)
        .setAudience(base)
        .setJti(randomUUID())
        .setIssuedAt()
        .setExpirationTime('1m')
        .sign(key);
    const exchange = async (key: Parameters<SignJWT["sign"]>[0]) => {
      const { code, verifier } = await codeFor(client.client_id, redirect);
      return token({
        grant_type: 'authorization_code',
        code,
        redirect_uri: redirect,
        code_verifier: verifier,
        client_id: client.client_id,
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await assertion(key),
      });
    };
    const refused = await exchange(wrong.privateKey);
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    assert.equal(refused.body.error, 'invalid_client');
    const unsigned = await token({ grant_type: 'authorization_code', code: 'x', redirect_uri: redirect, code_verifier: 'x'.repeat(43), client_id: client.client_id });
    assert.equal(unsigned.body.error, 'invalid_client', 'no assertion, no token');
    const t = await exchange(privateKey);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.equal((await mcpList(`${base}/mcp`, String(t.body.access_token))).status, 200);
  });
});
