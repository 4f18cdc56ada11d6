import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { findLeaks } from '../support/leaks.js';
import { startOAuthUpstream, type OAuthUpstream } from '../support/oauth-upstream.js';
import { toolText } from '../support/upstreams.js';
import { CONNECT_TEST_PASSWORD, elicitationOf, Jar } from '../support/connect-jar.js';

const SECRET = 'upstream-connect-jwt-secret-0123456789abcdef';
const ADMIN_KEY = 'static-admin-key-for-upstream-connect-0123456789';
const PASSWORD = CONNECT_TEST_PASSWORD;
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'];
/** The `sub` the upstream's `whoami` reports. */
const subOf = (result: unknown): string => (JSON.parse(toolText(result)) as { sub: string }).sub;
const SCREENSHOTS = process.env.CONNECT_SCREENSHOTS ?? 'docs/images';

describe('connecting a user account to an OAuth upstream in the flow (issue 14)', () => {
  let db: TestDatabase;
  let balancer: Balancer;
  let a: TestApp;
  let b: TestApp;
  let upstream: OAuthUpstream;
  let browser: Browser;
  const contexts: BrowserContext[] = [];
  const users: Record<string, string> = {};
  /** Values that must never be logged: the client secret, an authorization code and state seen in a flow. */
  const sensitive: Record<string, string> = {};
  const admin = (app: TestApp, method: string, path: string, body?: unknown) =>
    fetch(`${app.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });
  const tokenOf = (username: string) => hsToken(SECRET, { sub: username, name: username }, { issuer: 'urn:gatehouse:local' });

  /** An SDK v2 client as `username`: `legacy` (a 2025 revision) or `auto` (2026-07-28), with the given capabilities. */
  async function mcpClient(username: string, mode: 'legacy' | 'auto', capabilities: Record<string, unknown>, onUrl?: (url: string) => Promise<void>): Promise<Client> {
    const client = new Client({ name: `connect-${mode}`, version: '1' }, { capabilities, versionNegotiation: { mode } });
    if (onUrl) {
      client.setRequestHandler('elicitation/create', async (request) => {
        assert.equal(request.params.mode, 'url');
        await onUrl((request.params as { url: string }).url);
        return { action: 'accept' as const };
      });
    }
    const token = await tokenOf(username);
    await client.connect(new StreamableHTTPClientTransport(new URL(`${balancer.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    return client;
  }

  async function newPage(): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    contexts.push(context);
    context.setDefaultTimeout(60_000);
    return context.newPage();
  }

  /** In Chromium: opens `link`, signs in at Gatehouse as `username` if asked, presses Connect; resolves on the "Connected" page. */
  async function connectInBrowser(page: Page, link: string, username: string, screenshots = false): Promise<void> {
    await page.goto(link);
    if (new URL(page.url()).pathname === '/login') {
      await page.locator('input[name=username]').fill(username);
      await page.locator('input[name=password]').fill(PASSWORD);
      await page.locator('form[action="/login/local"] button[type=submit]').click();
      await page.waitForURL((u) => u.pathname.startsWith('/connect/'));
    }
    await page.locator('form[action^="/connect/"] button[type=submit]').waitFor();
    if (screenshots) await page.screenshot({ path: `${SCREENSHOTS}/upstream-connect-page.png`, fullPage: true });
    await page.locator('form[action^="/connect/"] button[type=submit]').click();
    await page.waitForURL((u) => u.pathname === '/upstream-oauth/callback');
    const error = await page.locator('[data-error]').textContent({ timeout: 500 }).catch(() => null);
    assert.equal(error, null, 'the callback page shows an error');
    await page.locator('[data-connected]').waitFor();
    if (screenshots) await page.screenshot({ path: `${SCREENSHOTS}/upstream-connected-page.png`, fullPage: true });
  }

  before(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    db = await createTestDatabase();
    balancer = await Balancer.start();
    upstream = await startOAuthUpstream({ redirectUris: [`${balancer.url}/upstream-oauth/callback`] });
    const env = {
      PUBLIC_URL: balancer.url,
      MCP_AUTH_STRATEGY: 'bearer,api_key',
      MCP_JWT_SECRET: SECRET,
      MCP_API_KEYS: ADMIN_KEY,
      GATEHOUSE_UPSTREAM_OAUTH_FETCH_ALLOW_PRIVATE: 'true',
    };
    [a, b] = await Promise.all([startTestApp(db.url, env), startTestApp(db.url, env)]);
    balancer.pointAt(a.url);
    for (const username of ['erin', 'frank']) {
      const res = await admin(a, 'POST', '/api/v1/local-accounts', { username, password: PASSWORD });
      assert.equal(res.status, 201, await res.clone().text());
      users[username] = ((await res.json()) as { userId: string }).userId;
    }
    const servers = [
      // A pre-registered client (the admin's oauth.clientId/clientSecret).
      { name: 'acme', transport: 'streamable_http', url: upstream.mcpUrl, oauth: { mode: 'user', scopes: ['read'], clientId: upstream.clientId, clientSecret: upstream.clientSecret } },
      // No client: Gatehouse registers itself (RFC 7591; no metadata document over http).
      { name: 'acme-dcr', transport: 'streamable_http', url: upstream.mcpUrl, oauth: { mode: 'user', scopes: ['read'] } },
    ];
    for (const server of servers) {
      const res = await admin(a, 'POST', '/api/v1/servers', server);
      assert.equal(res.status, 201, await res.text());
    }
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
  });

  after(async () => {
    if (process.env.DEBUG_CONNECT) for (const l of [...a.logs.lines, ...b.logs.lines]) if (/connect/i.test(String(l.msg))) console.error(JSON.stringify(l).slice(0, 1500));
    for (const context of contexts) await context.close().catch(() => undefined);
    await browser?.close();
    await Promise.all([a?.shutdown('test done'), b?.shutdown('test done')]);
    await upstream?.close();
    await balancer?.close();
    await db?.drop();
  });

  it('a 2025-11-25 client with URL elicitation gets -32042 with a personal link; in Chromium the user signs in, connects, and the retried call runs as them', async () => {
    const client = await mcpClient('erin', 'legacy', { elicitation: { url: {} } });
    try {
      const error = await client.callTool({ name: 'acme__whoami', arguments: {} }).then(
        () => assert.fail('the call should ask to connect'),
        (e: unknown) => e,
      );
      const elicitation = elicitationOf(error);
      assert.match(elicitation.url, new RegExp(`^${balancer.url}/connect/acme\\?ref=[A-Za-z0-9_-]+$`));
      assert.match(elicitation.message, /acme/);
      assert.equal(upstream.seen.filter((s) => s.sub !== null).length, 0, 'nothing reached the upstream with a token');

      upstream.nextLogin = 'erin-at-acme';
      await connectInBrowser(await newPage(), elicitation.url, 'erin', Boolean(process.env.GATEHOUSE_WRITE_SCREENSHOTS || process.env.UPDATE_SCREENSHOTS));

      const result = await client.callTool({ name: 'acme__whoami', arguments: {} });
      assert.equal(result.isError, undefined, toolText(result));
      assert.equal(subOf(result), 'erin-at-acme');
      const [row] = await db.query<{ owner: string; source: string; client_id: string; scopes: string[]; refreshable: boolean; resource: string; issuer: string }>(
        "SELECT owner, source, client_id, scopes, refresh_token_sealed IS NOT NULL AND token_endpoint IS NOT NULL AS refreshable, resource, issuer FROM upstream_oauth_connections WHERE server = 'acme'",
      );
      assert.deepEqual(
        { ...row, scopes: row.scopes.filter((s) => s !== 'offline_access') },
        { owner: users.erin, source: 'flow', client_id: upstream.clientId, scopes: ['read'], refreshable: true, resource: upstream.mcpUrl, issuer: upstream.issuer },
      );
    } finally {
      await client.close();
    }
  });

  it('insufficient_scope: the call asks again with the union of scopes; after approving, the retried call runs with the wider grant', async () => {
    const client = await mcpClient('erin', 'legacy', { elicitation: { url: {} } });
    try {
      const error = await client.callTool({ name: 'acme__admin_op', arguments: {} }).then(
        () => assert.fail('the call should ask for more access'),
        (e: unknown) => e,
      );
      const elicitation = elicitationOf(error);
      assert.match(elicitation.message, /more access.*admin/);
      const jar = new Jar();
      await jar.signIn(balancer.url, 'erin');
      upstream.nextLogin = 'erin-at-acme';
      const authorizeAt = await jar.startConnect(elicitation.url);
      assert.deepEqual(authorizeAt.searchParams.get('scope')?.split(' ').filter((s) => s !== 'offline_access').sort(), ['admin', 'read']);
      const callback = await jar.authorize(authorizeAt, balancer.url);
      assert.equal((await jar.request('GET', callback.href)).status, 200);
      const result = await client.callTool({ name: 'acme__admin_op', arguments: {} });
      assert.equal(toolText(result), 'admin done as erin-at-acme');
    } finally {
      await client.close();
    }
  });

  it('a 2026-07-28 client gets input_required with the URL elicitation; its retry after connecting succeeds as that user, and the other user still sees only their own account', async () => {
    const page = await newPage();
    let asked = 0;
    upstream.nextLogin = 'frank-at-acme';
    const client = await mcpClient('frank', 'auto', { elicitation: { url: {} } }, async (url) => {
      asked++;
      assert.match(url, new RegExp(`^${balancer.url}/connect/acme\\?ref=`));
      await connectInBrowser(page, url, 'frank');
    });
    const erin = await mcpClient('erin', 'legacy', { elicitation: { url: {} } });
    try {
      const result = await client.callTool({ name: 'acme__whoami', arguments: {} });
      assert.equal(asked, 1);
      assert.equal(subOf(result), 'frank-at-acme', toolText(result));
      const again = await erin.callTool({ name: 'acme__whoami', arguments: {} });
      assert.equal(subOf(again), 'erin-at-acme');
    } finally {
      await client.close();
      await erin.close();
    }
  });

  it('a client without URL elicitation gets a tool error with the link and plain instructions', async () => {
    const client = await mcpClient('erin', 'auto', {});
    try {
      const result = await client.callTool({ name: 'acme-dcr__whoami', arguments: {} });
      assert.equal(result.isError, true);
      const text = toolText(result);
      assert.match(text, new RegExp(`${balancer.url}/connect/acme-dcr\\?ref=[A-Za-z0-9_-]+`));
      assert.match(text, /signed in to Gatehouse as yourself/);
      assert.match(text, /run this call again/);
    } finally {
      await client.close();
    }
  });

  it('a link opened by another signed-in Gatehouse user connects nothing and says so', async () => {
    const client = await mcpClient('frank', 'auto', {});
    let link: string;
    try {
      link = /https?:\/\/\S+\/connect\/acme-dcr\?ref=[A-Za-z0-9_-]+/.exec(toolText(await client.callTool({ name: 'acme-dcr__whoami', arguments: {} })))![0];
    } finally {
      await client.close();
    }
    const jar = new Jar();
    await jar.signIn(balancer.url, 'erin');
    const page = await jar.request('GET', link);
    assert.equal(page.status, 403);
    assert.equal(page.error, 'other_user');
    assert.match(page.text, /another Gatehouse user/);
    assert.doesNotMatch(page.text, /name="csrf"/, 'no Connect button');
    // Nor can the form be posted with that ref.
    const csrfPage = await jar.request('GET', `${balancer.url}/connect/acme-dcr`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(csrfPage.text)![1];
    const posted = await jar.request('POST', `${balancer.url}/connect/acme-dcr`, { csrf, ref: new URL(link).searchParams.get('ref')! });
    assert.equal(posted.status, 403);
    assert.equal(posted.error, 'other_user');
    const rows = await db.query("SELECT 1 FROM upstream_oauth_flows WHERE server = 'acme-dcr'");
    assert.equal(rows.length, 0, 'no flow was started');
  });

  it('dynamic registration, a callback on another replica, state tampering, replay and an AS error', async () => {
    const jar = new Jar();
    await jar.signIn(balancer.url, 'frank');
    upstream.nextLogin = 'frank-dcr';
    const authorizeAt = await jar.startConnect(`${balancer.url}/connect/acme-dcr`);
    assert.equal(authorizeAt.origin, upstream.issuer);
    assert.equal(authorizeAt.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authorizeAt.searchParams.get('resource'), upstream.mcpUrl);
    assert.equal(authorizeAt.searchParams.get('redirect_uri'), `${balancer.url}/upstream-oauth/callback`);
    const registered = await db.query<{ issuer: string; client_id: string; client_secret_sealed: string | null }>('SELECT issuer, client_id, client_secret_sealed FROM upstream_oauth_clients');
    assert.equal(registered.length, 1);
    assert.equal(authorizeAt.searchParams.get('client_id'), registered[0].client_id);
    assert.notEqual(registered[0].client_id, upstream.clientId, 'a client of its own');

    const callback = await jar.authorize(authorizeAt, balancer.url);
    const state = callback.searchParams.get('state')!;
    Object.assign(sensitive, { code: callback.searchParams.get('code')!, state });
    // Tampered state: refused, nothing stored.
    const tampered = new URL(callback);
    tampered.searchParams.set('state', `${state.slice(0, -2)}xx`);
    const refused = await jar.request('GET', `${b.url}${tampered.pathname}${tampered.search}`);
    assert.equal(refused.status, 400, refused.text.slice(-600));
    assert.equal(refused.error, 'unknown_state');
    // The genuine callback, on replica B (the flow was started on A).
    const done = await jar.request('GET', `${b.url}${callback.pathname}${callback.search}`);
    assert.equal(done.status, 200, done.text.slice(0, 500));
    assert.match(done.text, /Go back to your MCP client/);
    // Replayed: the flow is single-use.
    const replay = await jar.request('GET', `${a.url}${callback.pathname}${callback.search}`);
    assert.equal(replay.error, 'unknown_state');

    const client = await mcpClient('frank', 'auto', {});
    try {
      assert.equal(subOf(await client.callTool({ name: 'acme-dcr__whoami', arguments: {} })), 'frank-dcr');
    } finally {
      await client.close();
    }

    // A second flow reuses the registration; the AS refusing shows its error and connects nothing.
    const second = await jar.startConnect(`${balancer.url}/connect/acme-dcr`);
    assert.equal(second.searchParams.get('client_id'), registered[0].client_id);
    assert.equal((await db.query('SELECT 1 FROM upstream_oauth_clients')).length, 1);
    const denied = await jar.request('GET', `${balancer.url}/upstream-oauth/callback?error=access_denied&error_description=${encodeURIComponent('The user said no')}&state=${second.searchParams.get('state')}`);
    assert.equal(denied.status, 400);
    assert.equal(denied.error, 'access_denied');
    assert.match(denied.text, /declined the authorization for server &quot;acme-dcr&quot; \(access_denied: The user said no\)/);
  });

  it('an unsigned browser is sent to sign in and back; the connect page carries a CSP allowing only the authorization server as form target', async () => {
    const jar = new Jar();
    const res = await jar.request('GET', `${balancer.url}/connect/acme`);
    assert.equal(res.status, 303);
    assert.equal(res.location, `/login?return_to=${encodeURIComponent('/connect/acme')}`);
    await jar.signIn(balancer.url, 'erin');
    const page = await jar.request('GET', `${balancer.url}/connect/acme`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', new RegExp(`form-action 'self' ${upstream.issuer.replace(/[.]/g, '\\.')};`));
    assert.match(page.text, /Already connected/);
    const unknown = await jar.request('GET', `${balancer.url}/connect/nope`);
    assert.equal(unknown.status, 404);
    assert.equal(unknown.error, 'unknown_server');
    const metadata = await fetch(`${balancer.url}/upstream-oauth/client.json`);
    assert.equal(metadata.status, 404, 'no client metadata document over http');
  });

  it('no client secret, authorization code or state appears in the logs', () => {
    assert.ok(sensitive.code);
    assert.deepEqual(findLeaks({ ...sensitive, clientSecret: upstream.clientSecret }, { logs: [a.logs.raw, b.logs.raw] }), []);
  });
});
