import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { BrowserSessionService } from '../../src/login/browser-session.service.js';
import { idpSignIn, LoginDeployment, startUrl } from '../support/login-deployment.js';

describe('browser sign-in at the team IdP (OIDC): PKCE, state, nonce, two replicas, who may sign in', () => {
  let d: LoginDeployment;
  before(async () => {
    d = await LoginDeployment.start();
  });
  after(async () => {
    await d?.close();
  });

  it('OIDC: signs in with PKCE, state and nonce, lands on return_to; groups map to roles; the session cookie is HttpOnly and Lax; BrowserSessionService knows the user', async () => {
    const page = await d.newPage();
    const authorize: URL[] = [];
    page.on('request', (r) => r.url().startsWith(`${d.idp.issuer}/auth`) && authorize.push(new URL(r.url())));
    await page.goto(`${d.balancer.url}/login?return_to=${encodeURIComponent('/login?next=1')}`);
    if (process.env.UPDATE_SCREENSHOTS) {
      mkdirSync('docs/images', { recursive: true });
      await page.screenshot({ path: 'docs/images/login.png', fullPage: true });
      await page.setViewportSize({ width: 320, height: 640 });
      await page.screenshot({ path: 'docs/images/login-320.png', fullPage: true });
      await page.setViewportSize({ width: 1280, height: 720 });
    }
    await page.getByRole('link', { name: 'Sign in with Team IdP' }).click();
    await page.waitForURL(`${d.idp.issuer}/**`);
    const params = authorize[0].searchParams;
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.ok(params.get('state') && params.get('nonce') && params.get('code_challenge'));
    await idpSignIn(page, 'alice');
    await page.waitForURL(`${d.balancer.url}/login?next=1`);
    assert.equal(await page.locator('h1').textContent(), 'Signed in');
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Alice/);
    if (process.env.UPDATE_SCREENSHOTS) await page.screenshot({ path: 'docs/images/login-signed-in.png', fullPage: true });
    const alice = (await d.usersRow('alice'))!;
    assert.deepEqual(alice.roles.sort(), ['admin', 'member']);
    assert.deepEqual(alice.groups.sort(), ['eng', 'gatehouse-admins']);
    const cookie = (await page.context().cookies()).find((c) => c.name === 'gatehouse_session')!;
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Lax');
    const stored = await d.db.query<{ token_hash: Buffer }>('SELECT token_hash FROM browser_sessions');
    assert.ok(stored.every((r) => !r.token_hash.toString('latin1').includes(cookie.value)), 'only a hash of the cookie is stored');
    // The contract with the authorization server, on the other replica.
    const sessions = d.b.app.get(BrowserSessionService);
    const signedIn = await sessions.current({ headers: { cookie: `gatehouse_session=${cookie.value}` } } as never);
    assert.equal(signedIn?.userId, alice.id);
    assert.equal(signedIn?.idp, 'team');
    assert.ok(signedIn && Math.abs(signedIn.authTime - Date.now() / 1000) < 60);
    assert.equal(sessions.loginUrl('/interaction/abc'), '/login?return_to=%2Finteraction%2Fabc');
    assert.equal(sessions.loginUrl('https://evil.example/'), '/login');

    // Sign-out ends it on every replica.
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.waitForURL(`${d.balancer.url}/login`);
    assert.equal(await sessions.current({ headers: { cookie: `gatehouse_session=${cookie.value}` } } as never), null);
  });

  it('two replicas: a sign-in started on A finishes on B', async () => {
    const page = await d.newPage();
    const callbacks: string[] = [];
    page.on('response', (r) => r.url().includes('/login/team/callback') && callbacks.push(`${r.status()} ${new URL(r.url()).origin}`));
    await page.goto(`${d.balancer.url}/login/team`);
    await idpSignIn(page, 'carol', (callback) => {
      callback.host = new URL(d.b.url).host;
      return callback;
    });
    await page.waitForURL(`${d.b.url}/login`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as carol/);
    assert.deepEqual(callbacks, [`303 ${d.b.url}`], 'replica B finished the sign-in');
  });

  it('refuses a callback whose state was changed, or that reaches another browser (login CSRF)', async () => {
    const page = await d.newPage();
    let callback = '';
    await page.goto(`${d.balancer.url}/login/team`);
    await idpSignIn(page, 'alice', (url) => {
      callback = url.href;
      const tampered = new URL(url);
      tampered.searchParams.set('state', 'x'.repeat(43));
      return tampered;
    });
    assert.equal(await d.errorCode(page), 'state_mismatch');
    // The genuine callback URL, opened in another browser (an attacker's link): refused too.
    const other = await d.newPage();
    const answer = await other.goto(callback);
    assert.equal(answer?.status(), 400);
    assert.equal(await d.errorCode(other), 'state_mismatch');
  });

  it('refuses an ID token whose nonce is not the one Gatehouse sent', async () => {
    const page = await d.newPage();
    const authorize = await startUrl(page, `${d.balancer.url}/login/team`);
    authorize.searchParams.set('nonce', 'a-nonce-gatehouse-never-sent');
    await page.goto(authorize.href);
    await idpSignIn(page, 'alice');
    assert.equal(await d.errorCode(page), 'invalid_response');
    assert.match((await page.locator('[data-error]').textContent()) ?? '', /nonce/);
  });

  it('refuses people outside the allowed domains and unverified emails', async () => {
    for (const [login, code] of [
      ['mallory', 'domain_not_allowed'],
      ['bob', 'email_unverified'],
    ] as const) {
      const page = await d.newPage();
      await page.goto(`${d.balancer.url}/login/team`);
      await idpSignIn(page, login);
      assert.equal(await d.errorCode(page), code, login);
      if (process.env.UPDATE_SCREENSHOTS && code === 'domain_not_allowed') await page.screenshot({ path: 'docs/images/login-refused.png', fullPage: true });
      assert.equal(await d.usersRow(login), undefined, `${login} got no users row`);
    }
  });
});
