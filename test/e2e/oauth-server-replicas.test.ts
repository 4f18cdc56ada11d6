import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { SIGNED_IN_USER_RESOLVER, type SignedInUserSlot } from '../../src/oauth-server/signed-in-user.js';
import { UsersService } from '../../src/users/users.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AsClient, claimsOf, consentInBrowser, formPost, launchChromium, pkce, redirectUri, TestSignIn, userApiKey } from '../support/oauth.js';
import { findLeaks } from '../support/leaks.js';
import { eventually } from '../support/upstreams.js';

const ADMIN_KEY = 'static-bootstrap-key-0123456789abcdef';
const admin = { 'x-api-key': ADMIN_KEY };

/**
 * Two Gatehouse replicas on one database, both the authorization server of one PUBLIC_URL (a
 * balancer in front, pointing at A for the browser's steps); the token, refresh, revocation and
 * MCP calls go to one replica or the other directly. Nothing is shared between them but
 * PostgreSQL (and its change bus).
 */
describe('the authorization server on two replicas', () => {
  let db: TestDatabase;
  let balancer: Balancer;
  let a: TestApp;
  let b: TestApp;
  let browser: Browser;
  let alice: string;
  let as: AsClient;
  let client: { client_id: string };
  let redirect: string;
  /** Every code, access and refresh token handed out (for the leak check). */
  const issued: string[] = [];

  before(async () => {
    redirect = await redirectUri('/replicas/cb');
    db = await createTestDatabase();
    balancer = await Balancer.start();
    const env = { PUBLIC_URL: balancer.url, MCP_AUTH_STRATEGY: 'oauth2,api_key', MCP_API_KEYS: ADMIN_KEY, GATEHOUSE_OAUTH_SERVER: 'true' };
    a = await startTestApp(db.url, env);
    b = await startTestApp(db.url, env);
    for (const app of [a, b]) app.app.get<SignedInUserSlot>(SIGNED_IN_USER_RESOLVER).use(new TestSignIn());
    balancer.pointAt(a.url);
    browser = await launchChromium();
    alice = (await a.app.get(UsersService).resolve({ issuer: 'test-idp', subject: 'alice', email: 'alice@example.com', displayName: 'Alice', groups: [] })).id;
    as = new AsClient(balancer.url);
    client = await as.register({ client_name: 'Replicated', redirect_uris: [redirect] });
  });

  after(async () => {
    await browser?.close();
    await Promise.all([a?.shutdown('test'), b?.shutdown('test')]);
    await balancer?.close();
    await db?.drop();
  });

  /** Consents in the browser (through the balancer, on A) and exchanges the code at `tokenAt`. */
  async function signIn(tokenAt: string): Promise<{ access: string; refresh: string; grantId: string }> {
    const { verifier, challenge } = pkce();
    const { params } = await consentInBrowser(browser, balancer.url, alice, as.authorizeUrl(client.client_id, redirect, challenge), redirect);
    const code = params.get('code');
    assert.ok(code, params.toString());
    const t = await as.token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: client.client_id, code_verifier: verifier }, tokenAt);
    assert.equal(t.status, 200, JSON.stringify(t.body));
    const access = String(t.body.access_token);
    const grantId = claimsOf(access).grant_id;
    assert.equal(typeof grantId, 'string', 'the access token names its grant');
    issued.push(access, String(t.body.refresh_token), code);
    return { access, refresh: String(t.body.refresh_token), grantId: grantId as string };
  }

  /** The MCP endpoint's answer to `accessToken` on each replica: `[status on A, status on B]`. */
  const statuses = async (accessToken: string) => [(await AsClient.initialize(`${a.url}/mcp`, accessToken)).status, (await AsClient.initialize(`${b.url}/mcp`, accessToken)).status];

  /** How long (ms) until `accessToken` is refused on replica `app` (fails after 5 s). */
  async function refusedWithin(app: TestApp, accessToken: string): Promise<number> {
    const started = Date.now();
    await eventually('the token refused', async () => ((await AsClient.initialize(`${app.url}/mcp`, accessToken)).status === 401 ? true : undefined), 5_000);
    return Date.now() - started;
  }

  it('authorize on A, token on B, refresh on A: each step on the other replica; the tokens work on both', async () => {
    const first = await signIn(b.url);
    assert.deepEqual(await statuses(first.access), [200, 200]);
    const refreshed = await as.token({ grant_type: 'refresh_token', refresh_token: first.refresh, client_id: client.client_id }, a.url);
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.notEqual(refreshed.body.refresh_token, first.refresh, 'rotated');
    assert.deepEqual(await statuses(String(refreshed.body.access_token)), [200, 200]);
    const again = await as.token({ grant_type: 'refresh_token', refresh_token: String(refreshed.body.refresh_token), client_id: client.client_id }, b.url);
    assert.equal(again.status, 200, JSON.stringify(again.body));
  });

  it('DELETE /api/v1/me/grants/<id> on A: the access token is refused at once on A and within moments on B (it worked on both, principal cached)', async (t) => {
    const { access, refresh, grantId } = await signIn(a.url);
    assert.deepEqual(await statuses(access), [200, 200]);
    const key = await userApiKey(a.app, alice, 'alice-laptop');
    const mine = (await (await fetch(`${a.url}/api/v1/me/grants`, { headers: { 'x-api-key': key } })).json()) as { items: { id: string }[] };
    assert.ok(mine.items.some((g) => g.id === grantId), 'the approval is listed');
    const res = await fetch(`${a.url}/api/v1/me/grants/${grantId}`, { method: 'DELETE', headers: { 'x-api-key': key } });
    assert.equal(res.status, 204, await res.text());
    const onA = await AsClient.initialize(`${a.url}/mcp`, access);
    assert.equal(onA.status, 401, 'refused on the revoking replica with its next request');
    assert.match(onA.headers.get('www-authenticate') ?? '', /invalid_token/);
    const ms = await refusedWithin(b, access);
    t.diagnostic(`refused on replica B ${ms} ms after the revocation on A answered`);
    assert.ok(ms < 2_000, `refused on B after ${ms} ms`);
    const refreshed = await as.token({ grant_type: 'refresh_token', refresh_token: refresh, client_id: client.client_id }, b.url);
    assert.equal(refreshed.body.error, 'invalid_grant', 'the refresh token is gone too');
  });

  it("an admin's DELETE /api/v1/users/<id>/grants/<id> on B refuses the access token on A", async () => {
    const { access, grantId } = await signIn(a.url);
    assert.deepEqual(await statuses(access), [200, 200]);
    const res = await fetch(`${b.url}/api/v1/users/${alice}/grants/${grantId}`, { method: 'DELETE', headers: admin });
    assert.equal(res.status, 204, await res.text());
    assert.equal((await AsClient.initialize(`${b.url}/mcp`, access)).status, 401);
    assert.ok((await refusedWithin(a, access)) < 2_000);
  });

  it('revoking the refresh token at /oauth/revoke (RFC 7009) on B refuses the access tokens of its grant on A and B', async () => {
    const { access, refresh } = await signIn(a.url);
    assert.deepEqual(await statuses(access), [200, 200]);
    const res = await fetch(`${b.url}/oauth/revoke`, formPost({ token: refresh, token_type_hint: 'refresh_token', client_id: client.client_id }));
    assert.equal(res.status, 200, await res.text());
    assert.equal((await AsClient.initialize(`${b.url}/mcp`, access)).status, 401);
    assert.ok((await refusedWithin(a, access)) < 2_000);
  });

  it('reusing a rotated refresh token after the grace window revokes the grant: its newest access token is refused too', async () => {
    const { refresh } = await signIn(a.url);
    const next = await as.token({ grant_type: 'refresh_token', refresh_token: refresh, client_id: client.client_id }, a.url);
    assert.equal(next.status, 200, JSON.stringify(next.body));
    const access = String(next.body.access_token);
    assert.deepEqual(await statuses(access), [200, 200]);
    await db.query("UPDATE oauth_models SET consumed_at = now() - interval '1 hour' WHERE model = 'RefreshToken' AND consumed_at IS NOT NULL");
    const reuse = await as.token({ grant_type: 'refresh_token', refresh_token: refresh, client_id: client.client_id }, b.url);
    assert.equal(reuse.body.error, 'invalid_grant');
    assert.equal((await AsClient.initialize(`${b.url}/mcp`, access)).status, 401);
    assert.ok((await refusedWithin(a, access)) < 2_000);
  });

  it('a replica started after a revocation refuses the token (revocations are read from PostgreSQL at start)', async () => {
    const { access, grantId } = await signIn(a.url);
    const res = await fetch(`${a.url}/api/v1/users/${alice}/grants/${grantId}`, { method: 'DELETE', headers: admin });
    assert.equal(res.status, 204);
    const c = await startTestApp(db.url, { PUBLIC_URL: balancer.url, MCP_AUTH_STRATEGY: 'oauth2,api_key', MCP_API_KEYS: ADMIN_KEY, GATEHOUSE_OAUTH_SERVER: 'true' });
    try {
      assert.equal((await AsClient.initialize(`${c.url}/mcp`, access)).status, 401);
    } finally {
      await c.shutdown('test');
    }
  });

  it("no code, access token or refresh token appears in either replica's logs", () => {
    const values = Object.fromEntries(issued.map((v, i) => [`credential ${i}`, v]));
    assert.deepEqual(findLeaks(values, { 'logs of A': [a.logs.raw], 'logs of B': [b.logs.raw] }), []);
  });
});
