import { createHash, randomBytes } from 'node:crypto';
import { createServer as createHttpServer } from 'node:http';
import type { INestApplicationContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { ApiKeysService } from '../../src/api-keys/api-keys.service.js';
import { permissionsFor } from '../../src/auth/principal.js';
import { userPrincipalId } from '../../src/users/users.service.js';
import { mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import type { SignedInUser, SignedInUserResolver } from '../../src/oauth-server/signed-in-user.js';

export { freePort } from './process.js';

/** Test-only sign-in (the contract's stand-in for the login module): cookie `test_user=<users.id>`. */
export class TestSignIn implements SignedInUserResolver {
  current(request: FastifyRequest): Promise<SignedInUser | null> {
    const m = /(?:^|;\s*)test_user=([0-9a-f-]{36})/.exec(request.headers.cookie ?? '');
    return Promise.resolve(m ? { userId: m[1], sessionId: `s-${m[1]}`, authTime: Math.floor(Date.now() / 1000), idp: 'local', amr: ['pwd'] } : null);
  }
  loginUrl(returnTo: string): string {
    return `/login?return_to=${encodeURIComponent(returnTo)}`;
  }
}

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

/** Headless Chromium as the brief prescribes. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
}

/** The test process's one redirect-URI listener (see {@link redirectUri}). */
interface RedirectCatcher {
  port: number;
  /** The first request per path since {@link consentInBrowser} cleared it. */
  hits: Map<string, URL>;
}

let catcher: Promise<RedirectCatcher> | undefined;

/** Starts (once per process) the listener every test redirect URI points at, on a port the kernel chose, kept open until exit. */
function redirectCatcher(): Promise<RedirectCatcher> {
  catcher ??= new Promise((resolve) => {
    const hits = new Map<string, URL>();
    const server = createHttpServer((req, res) => {
      const url = new URL(req.url ?? '/', `http://${req.headers.host ?? '127.0.0.1'}`);
      if (!hits.has(url.pathname)) hits.set(url.pathname, url);
      res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
    });
    server.unref();
    server.listen(0, '127.0.0.1', () => resolve({ port: (server.address() as { port: number }).port, hits }));
  });
  return catcher;
}

/**
 * A loopback redirect URI (`http://<host>:<port><path>`) answered by the test's own listener, for
 * {@link consentInBrowser}. The port is one the kernel gave a listener that stays open, so no
 * other process can take it between registration and the redirect (fixed ports collided with
 * parallel test processes' outgoing connections: EADDRINUSE on CI). Give each test its own path.
 */
export async function redirectUri(path: string, host: '127.0.0.1' | 'localhost' = '127.0.0.1'): Promise<string> {
  return `http://${host}:${(await redirectCatcher()).port}${path}`;
}

/**
 * Drives a browser signed in as `userId` through `authorizeUrl`: consents (or denies) on the
 * Gatehouse page, and returns the query of the redirect to `redirectUri` — answered by the test,
 * or, with `listen: false`, by the client itself (mcp-remote's own callback server).
 */
export async function consentInBrowser(
  browser: Browser,
  origin: string,
  userId: string,
  authorizeUrl: string,
  redirectUri: string,
  decision: 'approve' | 'deny' | 'none' = 'approve',
  { listen = true, screenshot }: { listen?: boolean; screenshot?: string } = {},
): Promise<{ params: URLSearchParams; consentShown: boolean; pageText: string }> {
  const context = await browser.newContext();
  try {
    await context.addCookies([{ name: 'test_user', value: userId, url: origin }]);
    const page = await context.newPage();
    let captured: URL | undefined;
    const target = new URL(redirectUri);
    // A real listener at the redirect URI (Playwright's routes do not see redirect hops).
    const catcher = listen ? await redirectCatcher() : undefined;
    if (catcher) {
      if (Number(target.port) !== catcher.port) throw new Error(`redirect URI ${redirectUri} is not on the test's redirect listener: build it with redirectUri()`);
      catcher.hits.delete(target.pathname);
    }
    const hit = () => (captured ??= catcher?.hits.get(target.pathname));
    await page.goto(authorizeUrl);
    let consentShown = false;
    let pageText = '';
    if (!hit()) {
      consentShown = (await page.locator('#approve').count()) > 0;
      pageText = await page.locator('main').innerText().catch(() => '');
      if (consentShown && screenshot) await writeScreenshots(page, screenshot);
      if (consentShown && decision !== 'none') {
        await page.click(decision === 'approve' ? '#approve' : '#deny');
        await page.waitForURL((u) => u.origin === target.origin && u.pathname === target.pathname, { timeout: 10_000 }).catch(async () => {
          throw new Error(`no redirect to ${redirectUri} after ${decision}; at ${page.url()}: ${await page.content()}`);
        });
        captured ??= hit() ?? new URL(page.url());
      }
    }
    if (!hit() && decision === 'none') await page.waitForLoadState('load').catch(() => undefined);
    if (!captured && decision !== 'none') throw new Error(`no redirect to ${redirectUri}; page: ${pageText}`);
    return { params: captured?.searchParams ?? new URLSearchParams(), consentShown, pageText };
  } finally {
    await context.close();
  }
}


/** A JSON answer's body, or `{ text }` when it is not JSON. */
export async function jsonOf(res: Response): Promise<Record<string, unknown>> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Record<string, unknown>;
  } catch {
    return { text };
  }
}

/** A `application/x-www-form-urlencoded` POST's fetch options. */
export const formPost = (o: Record<string, string>): RequestInit => ({ method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(o).toString() });

/**
 * The authorization server of a Gatehouse at `base` (its PUBLIC_URL, or one replica's URL for
 * the endpoints that need no browser) as an OAuth client sees it: registration, the authorization
 * URL, the token and revocation endpoints, and an MCP `initialize` with the access token.
 */
export class AsClient {
  constructor(readonly base: string) {}

  /** Registers a public client dynamically (RFC 7591); asserts 201. */
  async register(metadata: Record<string, unknown>): Promise<{ client_id: string }> {
    const res = await fetch(`${this.base}/oauth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token_endpoint_auth_method: 'none', ...metadata }) });
    const body = await jsonOf(res);
    if (res.status !== 201) throw new Error(`registration answered ${res.status}: ${JSON.stringify(body)}`);
    return body as { client_id: string };
  }

  /** `/oauth/authorize?…` for the code flow on `PUBLIC_URL/mcp` (scope `mcp`, state `st`), S256 when `challenge` is given. */
  authorizeUrl(clientId: string, redirectUri: string, challenge: string | undefined, extra: Record<string, string> = {}): string {
    const u = new URL(`${this.base}/oauth/authorize`);
    u.search = new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: redirectUri,
      scope: 'mcp',
      state: 'st',
      resource: `${this.base}/mcp`,
      ...(challenge ? { code_challenge: challenge, code_challenge_method: 'S256' } : {}),
      ...extra,
    }).toString();
    return u.href;
  }

  /** POST `/oauth/token` (at `at`, default this base) with `params`. */
  async token(params: Record<string, string>, at = this.base): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${at}/oauth/token`, formPost(params));
    return { status: res.status, body: await jsonOf(res) };
  }

  /** An MCP `initialize` at `url` with `accessToken` (status 200 when the token is accepted, 401 when not). */
  static initialize(url: string, accessToken: string): Promise<Response> {
    return fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', authorization: `Bearer ${accessToken}` },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
    });
  }
}

/** The claims of a JWT, unverified (tests read what Gatehouse issued). */
export function claimsOf(jwt: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split('.')[1] ?? '', 'base64url').toString()) as Record<string, unknown>;
}

/**
 * A user signed in as `userId` opens `origin/device`, types `userCode` (as shown to them, with or
 * without the dash), confirms it and approves (or denies) on the consent page. Returns the text of
 * the last page (`Device connected` on success) and the consent page's text.
 */
export async function deviceInBrowser(
  browser: Browser,
  origin: string,
  userId: string,
  userCode: string,
  decision: 'approve' | 'deny' = 'approve',
  screenshot?: string,
): Promise<{ finalText: string; consentText: string }> {
  const context = await browser.newContext();
  try {
    await context.addCookies([{ name: 'test_user', value: userId, url: origin }]);
    const page = await context.newPage();
    await page.goto(`${origin}/device`);
    if (screenshot) await writeScreenshots(page, screenshot);
    await page.locator('#user_code').fill(userCode);
    await page.locator('button[type=submit]').first().click();
    await page.waitForLoadState();
    // The confirmation page ("Confirm the device"), then the consent page.
    if ((await page.locator('input[name=confirm]').count()) > 0) {
      if (screenshot) await writeScreenshots(page, `${screenshot}-confirm`);
      await page.locator('button[type=submit]').first().click();
      await page.waitForLoadState();
    }
    let consentText = '';
    if ((await page.locator('#approve').count()) > 0) {
      consentText = await page.locator('main').innerText();
      await page.click(decision === 'approve' ? '#approve' : '#deny');
      await page.waitForLoadState();
    }
    return { finalText: await page.locator('main').innerText().catch(async () => page.content()), consentText };
  } finally {
    await context.close();
  }
}

/**
 * An API key of user `userId` (made in process, as the user would at `POST /api/v1/api-keys`): a
 * Gatehouse-issued access token is for the MCP endpoint only, so the tests call the user's own
 * admin API endpoints (`/api/v1/me/...`) with this.
 */
export async function userApiKey(app: INestApplicationContext, userId: string, name = 'test-key'): Promise<string> {
  const principal = { userId, id: userPrincipalId(userId), displayName: name, email: null, roles: ['member'], groups: [], scopes: permissionsFor(['member']), method: 'oauth2' as const, keyId: null };
  return (await app.get(ApiKeysService).create({ name }, principal)).key;
}

/** Whether tests write the documentation's pictures (`GATEHOUSE_WRITE_SCREENSHOTS=1`, or the older `UPDATE_SCREENSHOTS`). */
export const WRITE_SCREENSHOTS = process.env.GATEHOUSE_WRITE_SCREENSHOTS === '1' || !!process.env.UPDATE_SCREENSHOTS;

/**
 * Writes `docs/images/<name>.png` (1280 px wide) and `docs/images/<name>-320.png` (320 px: the
 * pages must stay readable on a phone) of `page` as it is, when {@link WRITE_SCREENSHOTS}; the
 * viewport is put back afterwards. Paths are relative to the repository root (where tests run).
 */
export async function writeScreenshots(page: Page, name: string): Promise<void> {
  if (!WRITE_SCREENSHOTS) return;
  mkdirSync('docs/images', { recursive: true });
  const viewport = page.viewportSize() ?? { width: 1280, height: 720 };
  await page.setViewportSize({ width: 1280, height: 720 });
  await page.screenshot({ path: `docs/images/${name}.png`, fullPage: true });
  await page.setViewportSize({ width: 320, height: 640 });
  await page.screenshot({ path: `docs/images/${name}-320.png`, fullPage: true });
  await page.setViewportSize(viewport);
}

/**
 * An in-memory OAuth client provider as the SDK clients (v1 `OAuthClientProvider` and v2's, the
 * same shape) use it: a public client (`none`) with the loopback `redirectUrl`, registered
 * dynamically. `authorizationUrl()` is where the SDK last sent the browser (undefined before).
 */
export function memoryOAuthProvider(clientName: string, redirectUrl: string) {
  let info: { client_id: string } | undefined;
  let tokens: Record<string, unknown> | undefined;
  let verifier = '';
  let authUrl: URL | undefined;
  const provider = {
    get redirectUrl() {
      return redirectUrl;
    },
    get clientMetadata() {
      return { client_name: clientName, redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none' };
    },
    clientInformation: () => info,
    saveClientInformation: (i: unknown) => void (info = i as { client_id: string }),
    tokens: () => tokens as never,
    saveTokens: (t: unknown) => void (tokens = t as Record<string, unknown>),
    redirectToAuthorization: (url: URL) => void (authUrl = url),
    saveCodeVerifier: (v: string) => void (verifier = v),
    codeVerifier: () => verifier,
  };
  return { provider, authorizationUrl: () => authUrl };
}
