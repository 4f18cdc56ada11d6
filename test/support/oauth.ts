import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import type { FastifyRequest } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import type { SignedInUser, SignedInUserResolver } from '../../src/oauth-server/signed-in-user.js';

/** A free TCP port on 127.0.0.1 (the issuer URL must be known before the app starts). */
export const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });

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

/**
 * Drives a browser signed in as `userId` through `authorizeUrl`: consents (or denies) on the
 * Gatehouse page, and returns the query of the redirect to `redirectUri` (answered by the test).
 */
export async function consentInBrowser(
  browser: Browser,
  origin: string,
  userId: string,
  authorizeUrl: string,
  redirectUri: string,
  decision: 'approve' | 'deny' | 'none' = 'approve',
): Promise<{ params: URLSearchParams; consentShown: boolean; pageText: string }> {
  const context = await browser.newContext();
  try {
    await context.addCookies([{ name: 'test_user', value: userId, url: origin }]);
    const page = await context.newPage();
    let captured: URL | undefined;
    const target = new URL(redirectUri);
    // A real listener at the redirect URI (Playwright's routes do not see redirect hops).
    const server = createHttpServer((req, res) => {
      const url = new URL(req.url ?? '/', redirectUri);
      if (!captured && url.pathname === target.pathname) captured = url;
      res.writeHead(200, { 'content-type': 'text/plain' }).end('done');
    });
    await new Promise<void>((resolve) => server.listen(Number(target.port), target.hostname === 'localhost' ? '127.0.0.1' : target.hostname, resolve));
    context.on('close', () => server.close());
    page.on('close', () => server.close());
    await page.goto(authorizeUrl);
    let consentShown = false;
    let pageText = '';
    if (!captured) {
      consentShown = (await page.locator('#approve').count()) > 0;
      pageText = await page.locator('main').innerText().catch(() => '');
      if (consentShown && decision !== 'none') {
        await page.click(decision === 'approve' ? '#approve' : '#deny');
        await page.waitForURL((u) => u.origin === target.origin && u.pathname === target.pathname, { timeout: 10_000 }).catch(async () => {
          throw new Error(`no redirect to ${redirectUri} after ${decision}; at ${page.url()}: ${await page.content()}`);
        });
      }
    }
    if (!captured && decision === 'none') await page.waitForLoadState('load').catch(() => undefined);
    if (!captured && decision !== 'none') throw new Error(`no redirect to ${redirectUri}; page: ${pageText}`);
    return { params: captured?.searchParams ?? new URLSearchParams(), consentShown, pageText };
  } finally {
    await context.close();
  }
}

