import assert from 'node:assert/strict';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from './app.js';
import { Balancer } from './balancer.js';
import { createTestDatabase, type TestDatabase } from './database.js';
import { startOAuth2Provider, startOidcIdp, type IdpAccount, type OAuth2Fixture } from './identity-providers.js';

export const ADMIN_KEY = 'static-admin-key-for-login-tests-0123456789';
const CLIENT = { clientId: 'gatehouse', clientSecret: 'a-client-secret-of-the-team-idp-0123456789' };
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];

/**
 * Signs in at the oidc-provider development pages (any login name; consent by "Continue").
 * `rewriteCallback` changes the IdP's redirect back to Gatehouse: the last form POST is sent by
 * the test (Playwright does not intercept requests reached by a redirect), its redirects followed
 * with the browser's cookies, and the browser sent on to the rewritten callback URL.
 */
export async function idpSignIn(page: Page, login: string, rewriteCallback?: (callback: URL) => URL): Promise<void> {
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
export async function startUrl(page: Page, url: string): Promise<URL> {
  const answer = await page.request.get(url, { maxRedirects: 0 });
  assert.equal(answer.status(), 303);
  return new URL(answer.headers().location);
}

/**
 * A sign-in deployment for browser tests: two Gatehouse replicas behind a balancer (PUBLIC_URL),
 * a real `oidc-provider` as the team IdP (provider `team`), a plain-OAuth2 fixture (the seed's
 * `MCP_OAUTH_*` provider `oauth`), one PostgreSQL database and a headless Chromium.
 */
export class LoginDeployment {
  db!: TestDatabase;
  balancer!: Balancer;
  idp!: { issuer: string; close(): Promise<void> };
  gh!: OAuth2Fixture;
  a!: TestApp;
  b!: TestApp;
  browser!: Browser;
  private readonly contexts: BrowserContext[] = [];

  /** @param accounts the IdP's people by login name (mutable: later sign-ins see changes) */
  constructor(readonly accounts: Record<string, IdpAccount>) {}

  /**
   * Starts everything. The IdP knows alice (verified, in gatehouse-admins and eng), mallory
   * (verified, outside the allowed domain), bob (unverified) and gina (verified); anyone else is
   * `<name>@example.com`, verified.
   */
  static async start(
    accounts: Record<string, IdpAccount> = {
      alice: { email: 'alice@example.com', email_verified: true, name: 'Alice', groups: ['gatehouse-admins', 'eng'] },
      mallory: { email: 'mallory@evil.test', email_verified: true, name: 'Mallory' },
      bob: { email: 'bob@example.com', email_verified: false, name: 'Bob' },
      gina: { email: 'gina@example.com', email_verified: true, name: 'Gina at the IdP' },
    },
  ): Promise<LoginDeployment> {
    const d = new LoginDeployment(accounts);
    d.db = await createTestDatabase();
    d.balancer = await Balancer.start();
    d.idp = await startOidcIdp({ ...CLIENT, redirectUris: [`${d.balancer.url}/login/team/callback`], accounts });
    d.gh = await startOAuth2Provider(CLIENT);
    const env = {
      PUBLIC_URL: d.balancer.url,
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: ADMIN_KEY,
      GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'team', type: 'oidc', name: 'Team IdP', issuer: d.idp.issuer, ...CLIENT }]),
      MCP_OAUTH_CLIENT_ID: CLIENT.clientId,
      MCP_OAUTH_CLIENT_SECRET: CLIENT.clientSecret,
      MCP_OAUTH_AUTH_URL: `${d.gh.url}/authorize`,
      MCP_OAUTH_TOKEN_URL: `${d.gh.url}/token`,
      MCP_OAUTH_USERINFO_URL: `${d.gh.url}/user`,
      MCP_OAUTH_SCOPE: 'read:user user:email',
      GATEHOUSE_LOGIN_ALLOWED_DOMAINS: 'example.com',
      GATEHOUSE_LOGIN_GROUP_ROLES: 'gatehouse-admins=admin',
    };
    [d.a, d.b] = await Promise.all([startTestApp(d.db.url, env), startTestApp(d.db.url, env)]);
    d.balancer.pointAt(d.a.url);
    d.browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
    return d;
  }

  /** A page in a fresh browser context (its own cookies). Nothing leaves the machine. */
  async newPage(): Promise<Page> {
    const context = await this.browser.newContext();
    this.contexts.push(context);
    // Waits are for events, never sleeps; the bound only matters when something is broken
    // (generous: a shared, loaded machine makes scrypt and Chromium slow).
    context.setDefaultTimeout(60_000);
    if (process.env.DEBUG_LOGIN) context.on('response', (r) => console.log('   ', r.status(), r.request().method(), r.url().slice(0, 150)));
    // The IdP's development pages import a web font.
    await context.route(/^https?:\/\/(?!127\.0\.0\.1)/, (route) => route.abort());
    return context.newPage();
  }

  /** An admin API call on replica A with the static admin key. */
  async api(method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${this.a.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return { status: res.status, json: (res.status === 204 ? {} : await res.json()) as Record<string, unknown> };
  }

  /** The `data-error` code on the page (the login page's refusal). */
  errorCode(page: Page): Promise<string | null> {
    return page.locator('[data-error]').getAttribute('data-error');
  }

  /** The users row with this subject, if any. */
  async usersRow(subject: string): Promise<{ id: string; roles: string[]; groups: string[]; disabled: boolean } | undefined> {
    return (await this.db.query<{ id: string; roles: string[]; groups: string[]; disabled: boolean }>('SELECT id, roles, groups, disabled FROM users WHERE subject = $1', [subject]))[0];
  }

  /** Signs `login` in at the team IdP in a new page; resolves on the signed-in page. */
  async signInAtIdp(login: string): Promise<Page> {
    const page = await this.newPage();
    await page.goto(`${this.balancer.url}/login/team`);
    await idpSignIn(page, login);
    await page.waitForURL(`${this.balancer.url}/login`);
    return page;
  }

  async close(): Promise<void> {
    for (const context of this.contexts) await context.close().catch(() => undefined);
    await this.browser?.close();
    await Promise.all([this.a?.shutdown('test done'), this.b?.shutdown('test done')]);
    await Promise.all([this.idp?.close(), this.gh?.close(), this.balancer?.close()]);
    await this.db?.drop();
  }
}
