import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { BrowserSessionService } from '../../src/login/browser-session.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startOAuth2Provider, startOidcIdp, type IdpAccount, type OAuth2Fixture } from '../support/identity-providers.js';

const ADMIN_KEY = 'static-admin-key-for-login-tests-0123456789';
const CLIENT = { clientId: 'gatehouse', clientSecret: 'a-client-secret-of-the-team-idp-0123456789' };
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/**
 * Signs in at the oidc-provider development pages (any login name; consent by "Continue").
 * `rewriteCallback` changes the IdP's redirect back to Gatehouse: the last form POST is sent by
 * the test (Playwright does not intercept requests reached by a redirect), its redirects followed
 * with the browser's cookies, and the browser sent on to the rewritten callback URL.
 */
async function idpSignIn(page: Page, login: string, rewriteCallback?: (callback: URL) => URL): Promise<void> {
  await page.locator('input[name=login]').fill(login);
  await page.locator('input[name=password]').fill('anything');
  await page.locator('button[type=submit]').click();
  await page.waitForLoadState();
  const consent = page.locator('button:has-text("Continue")');
  if (!(await consent.count())) return;
  if (rewriteCallback) {
    await page.route('**/interaction/**', async (route) => {
      if (route.request().method() !== 'POST') return route.continue();
      let location = (await route.fetch({ maxRedirects: 0 })).headers().location;
      for (let hops = 0; hops < 5 && !location.includes('/callback'); hops++) {
        location = (await page.request.get(new URL(location, route.request().url()).href, { maxRedirects: 0 })).headers().location;
      }
      await route.fulfill({ status: 303, headers: { location: rewriteCallback(new URL(location)).href } });
    });
  }
  await consent.click();
  await page.waitForLoadState();
}

/** The IdP authorization URL Gatehouse redirects to from `/login/<key>` (cookies land in the page's context). */
async function startUrl(page: Page, url: string): Promise<URL> {
  const answer = await page.request.get(url, { maxRedirects: 0 });
  assert.equal(answer.status(), 303);
  return new URL(answer.headers().location);
}

describe('browser sign-in at the team IdP (OIDC, plain OAuth2) and with Gatehouse passwords', () => {
  let db: TestDatabase;
  let balancer: Balancer;
  let idp: { issuer: string; close(): Promise<void> };
  let gh: OAuth2Fixture;
  let a: TestApp;
  let b: TestApp;
  let browser: Browser;
  const accounts: Record<string, IdpAccount> = {
    alice: { email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['gatehouse-admins', 'eng'] },
    mallory: { email: 'mallory@evil.test', email_verified: true, name: 'Mallory' },
    bob: { email: 'bob@example.com', email_verified: false, name: 'Bob' },
    gina: { email: 'gina@example.com', email_verified: true, name: 'Gina at the IdP' },
  };
  const contexts: BrowserContext[] = [];

  const newPage = async (): Promise<Page> => {
    const context = await browser.newContext();
    contexts.push(context);
    context.setDefaultTimeout(8_000);
    if (process.env.DEBUG_LOGIN) context.on('response', (r) => console.log('   ', r.status(), r.request().method(), r.url().slice(0, 150)));
    // Nothing leaves the machine (the IdP's development pages import a web font).
    await context.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
    return context.newPage();
  };
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${a.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, json: (res.status === 204 ? {} : await res.json()) as Record<string, unknown> };
  };
  const errorCode = (page: Page) => page.locator('[data-error]').getAttribute('data-error');
  const usersRow = async (subject: string) => (await db.query<{ id: string; roles: string[]; groups: string[]; disabled: boolean }>('SELECT id, roles, groups, disabled FROM users WHERE subject = $1', [subject]))[0];

  before(async () => {
    db = await createTestDatabase();
    balancer = await Balancer.start();
    idp = await startOidcIdp({
      ...CLIENT,
      redirectUris: [`${balancer.url}/login/team/callback`],
      accounts,
    });
    gh = await startOAuth2Provider(CLIENT);
    const env = {
      PUBLIC_URL: balancer.url,
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: ADMIN_KEY,
      GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'team', type: 'oidc', name: 'Team IdP', issuer: idp.issuer, ...CLIENT }]),
      MCP_OAUTH_CLIENT_ID: CLIENT.clientId,
      MCP_OAUTH_CLIENT_SECRET: CLIENT.clientSecret,
      MCP_OAUTH_AUTH_URL: `${gh.url}/authorize`,
      MCP_OAUTH_TOKEN_URL: `${gh.url}/token`,
      MCP_OAUTH_USERINFO_URL: `${gh.url}/user`,
      MCP_OAUTH_SCOPE: 'read:user user:email',
      GATEHOUSE_LOGIN_ALLOWED_DOMAINS: 'example.com',
      GATEHOUSE_LOGIN_GROUP_ROLES: 'gatehouse-admins=admin',
      GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT: '3',
    };
    a = await startTestApp(db.url, env);
    b = await startTestApp(db.url, env, {});
    balancer.pointAt(a.url);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });

  after(async () => {
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([a?.shutdown('test done'), b?.shutdown('test done')]);
    await Promise.all([idp?.close(), gh?.close(), balancer?.close()]);
    await db?.drop();
  });

  it('OIDC: signs in with PKCE, state and nonce, lands on return_to; groups map to roles; the session cookie is HttpOnly and Lax; BrowserSessionService knows the user', async () => {
    const page = await newPage();
    const authorize: URL[] = [];
    page.on('request', (r) => r.url().startsWith(`${idp.issuer}/auth`) && authorize.push(new URL(r.url())));
    await page.goto(`${balancer.url}/login?return_to=${encodeURIComponent('/login?next=1')}`);
    if (process.env.UPDATE_SCREENSHOTS) {
      mkdirSync('docs/images', { recursive: true });
      await page.screenshot({ path: 'docs/images/login.png', fullPage: true });
      await page.setViewportSize({ width: 320, height: 640 });
      await page.screenshot({ path: 'docs/images/login-320.png', fullPage: true });
      await page.setViewportSize({ width: 1280, height: 720 });
    }
    await page.getByRole('link', { name: 'Sign in with Team IdP' }).click();
    await page.waitForURL(`${idp.issuer}/**`);
    const params = authorize[0].searchParams;
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.ok(params.get('state') && params.get('nonce') && params.get('code_challenge'));
    await idpSignIn(page, 'alice');
    await page.waitForURL(`${balancer.url}/login?next=1`);
    assert.equal(await page.locator('h1').textContent(), 'Signed in');
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Alice/);
    if (process.env.UPDATE_SCREENSHOTS) await page.screenshot({ path: 'docs/images/login-signed-in.png', fullPage: true });
    const alice = await usersRow('alice');
    assert.deepEqual(alice.roles.sort(), ['admin', 'member']);
    assert.deepEqual(alice.groups.sort(), ['eng', 'gatehouse-admins']);
    const cookie = (await page.context().cookies()).find((c) => c.name === 'gatehouse_session')!;
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    const stored = await db.query<{ token_hash: Buffer }>('SELECT token_hash FROM browser_sessions');
    assert.ok(stored.every((r) => !r.token_hash.toString('latin1').includes(cookie.value)), 'only a hash of the cookie is stored');
    // The contract with the authorization server, on the other replica.
    const sessions = b.app.get(BrowserSessionService);
    const signedIn = await sessions.current({ headers: { cookie: `gatehouse_session=${cookie.value}` } } as never);
    assert.equal(signedIn?.userId, alice.id);
    assert.equal(signedIn?.idp, 'team');
    assert.ok(signedIn && Math.abs(signedIn.authTime - Date.now() / 1000) < 60);
    assert.equal(sessions.loginUrl('/interaction/abc'), '/login?return_to=%2Finteraction%2Fabc');
    assert.equal(sessions.loginUrl('https://evil.example/'), '/login');

    // Sign-out ends it on every replica.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${balancer.url}/login`);
    assert.equal(await sessions.current({ headers: { cookie: `gatehouse_session=${cookie.value}` } } as never), null);
  });

  it('two replicas: a sign-in started on A finishes on B', async () => {
    const page = await newPage();
    const callbacks: string[] = [];
    page.on('response', (r) => r.url().includes('/login/team/callback') && callbacks.push(`${r.status()} ${new URL(r.url()).origin}`));
    await page.goto(`${balancer.url}/login/team`);
    await idpSignIn(page, 'carol', (callback) => {
      callback.host = new URL(b.url).host;
      return callback;
    });
    await page.waitForURL(`${b.url}/login`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as carol/);
    assert.deepEqual(callbacks, [`303 ${b.url}`], 'replica B finished the sign-in');
  });

  it('refuses a callback whose state was changed, or that reaches another browser (login CSRF)', async () => {
    const page = await newPage();
    let callback = '';
    await page.goto(`${balancer.url}/login/team`);
    await idpSignIn(page, 'alice', (url) => {
      callback = url.href;
      const tampered = new URL(url);
      tampered.searchParams.set('state', 'x'.repeat(43));
      return tampered;
    });
    assert.equal(await errorCode(page), 'state_mismatch');
    // The genuine callback URL, opened in another browser (an attacker's link): refused too.
    const other = await newPage();
    const answer = await other.goto(callback);
    assert.equal(answer?.status(), 400);
    assert.equal(await errorCode(other), 'state_mismatch');
  });

  it('refuses an ID token whose nonce is not the one Gatehouse sent', async () => {
    const page = await newPage();
    const authorize = await startUrl(page, `${balancer.url}/login/team`);
    authorize.searchParams.set('nonce', 'a-nonce-gatehouse-never-sent');
    await page.goto(authorize.href);
    await idpSignIn(page, 'alice');
    assert.equal(await errorCode(page), 'invalid_response');
    assert.match((await page.locator('[data-error]').textContent()) ?? '', /nonce/);
  });

  it('refuses people outside the allowed domains and unverified emails', async () => {
    for (const [login, code] of [
      ['mallory', 'domain_not_allowed'],
      ['bob', 'email_unverified'],
    ] as const) {
      const page = await newPage();
      await page.goto(`${balancer.url}/login/team`);
      await idpSignIn(page, login);
      assert.equal(await errorCode(page), code, login);
      if (process.env.UPDATE_SCREENSHOTS && code === 'domain_not_allowed') await page.screenshot({ path: 'docs/images/login-refused.png', fullPage: true });
      assert.equal(await usersRow(login), undefined, `${login} got no users row`);
    }
  });

  it('plain OAuth2 (passport-oauth2, seed MCP_OAUTH_* names): signs in through the userinfo URL', async () => {
    gh.user = { id: 4242, login: 'octo', name: 'Octo Cat', email: 'octo@example.com', email_verified: true };
    const page = await newPage();
    await page.goto(`${balancer.url}/login`);
    await page.getByRole('link', { name: /Sign in with 127\.0\.0\.1/ }).click();
    await page.waitForURL(`${balancer.url}/login`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Octo Cat/);
    const request = gh.tokenRequests.at(-1)!;
    assert.ok(request.get('code_verifier'), 'PKCE verifier sent to the token endpoint');
    assert.equal((await usersRow('4242'))?.disabled, false);
  });

  it('a disabled user is signed out everywhere and cannot sign in again', async () => {
    const page = await newPage();
    await page.goto(`${balancer.url}/login/team`);
    await idpSignIn(page, 'dave');
    await page.waitForURL(`${balancer.url}/login`);
    const dave = await usersRow('dave');
    assert.equal((await api('PATCH', `/api/v1/users/${dave.id}`, { disabled: true })).status, 200);
    const [open] = await db.query<{ n: string }>('SELECT count(*) AS n FROM browser_sessions WHERE user_id = $1 AND revoked_at IS NULL', [dave.id]);
    assert.equal(Number(open.n), 0, 'their browser sessions are revoked');
    await page.reload();
    assert.equal(await page.locator('h1').textContent(), 'Sign in');
    await page.goto(`${balancer.url}/login/team`);
    if (await page.locator('input[name=login]').count()) await idpSignIn(page, 'dave');
    await page.waitForURL(/\/login/);
    assert.equal(await errorCode(page), 'user_disabled');
  });

  it('local accounts: created by an admin, signed in through the form (keyboard only), return_to kept', async () => {
    const created = await api('POST', '/api/v1/local-accounts', { username: 'erin', password: 'a long local password', email: 'erin@example.com', displayName: 'Erin' });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal((await api('POST', '/api/v1/local-accounts', { username: 'erin', password: 'another long password' })).status, 409);
    const short = await api('POST', '/api/v1/local-accounts', { username: 'frank', password: 'short' });
    assert.equal(short.status, 400);
    assert.match(String((short.json.error as { message: string }).message), /password: expected at least 12 characters/);
    const page = await newPage();
    await page.goto(`${balancer.url}/login?return_to=${encodeURIComponent('/login?from=local')}`);
    await page.locator('#username').focus();
    await page.keyboard.type('erin');
    await page.keyboard.press('Tab');
    await page.keyboard.type('a long local password');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${balancer.url}/login?from=local`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Erin/);
  });

  it('IdP groups keep following the IdP: leaving the admins group removes the role at the next sign-in', async () => {
    accounts.alice = { ...accounts.alice, groups: ['eng'] };
    const page = await newPage();
    await page.goto(`${balancer.url}/login/team`);
    await idpSignIn(page, 'alice');
    await page.waitForURL(`${balancer.url}/login`);
    const alice = await usersRow('alice');
    assert.deepEqual(alice.roles, ['member']);
    assert.deepEqual(alice.groups, ['eng']);
  });

  it('one user per person: an IdP sign-in links to the local account with the same admin-set email, only when the IdP verified it', async () => {
    const created = await api('POST', '/api/v1/local-accounts', { username: 'gina', password: 'gina has a long password', email: 'gina@example.com' });
    assert.equal(created.status, 201);
    const page = await newPage();
    await page.goto(`${balancer.url}/login/team`);
    await idpSignIn(page, 'gina');
    await page.waitForURL(`${balancer.url}/login`);
    const rows = await db.query<{ id: string }>("SELECT id FROM users WHERE email = 'gina@example.com'");
    assert.deepEqual(rows.map((r) => r.id), [created.json.userId], 'no second users row');
    const identities = await db.query<{ provider: string }>('SELECT provider FROM login_identities WHERE user_id = $1 ORDER BY provider', [created.json.userId]);
    assert.deepEqual(identities.map((r) => r.provider), ['local', 'team']);
  });
});
