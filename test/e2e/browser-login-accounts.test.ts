import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { idpSignIn, LoginDeployment } from '../support/login-deployment.js';
import { eventually } from '../support/upstreams.js';

describe('browser sign-in: plain OAuth2, Gatehouse passwords, disabled users, roles from IdP groups, one user per person', () => {
  let d: LoginDeployment;
  before(async () => {
    d = await LoginDeployment.start();
  });
  after(async () => {
    await d?.close();
  });

  it('plain OAuth2 (passport-oauth2, seed MCP_OAUTH_* names): signs in through the userinfo URL', async () => {
    d.gh.user = { id: 4242, login: 'octo', name: 'Octo Cat', email: 'octo@example.com', email_verified: true };
    const page = await d.newPage();
    await page.goto(`${d.balancer.url}/login`);
    await page.getByRole('link', { name: /Sign in with 127\.0\.0\.1/ }).click();
    await page.waitForURL(`${d.balancer.url}/login`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Octo Cat/);
    const request = d.gh.tokenRequests.at(-1)!;
    assert.ok(request.get('code_verifier'), 'PKCE verifier sent to the token endpoint');
    assert.equal((await d.usersRow('4242'))?.disabled, false);
  });

  it('a disabled user is signed out everywhere and cannot sign in again', async () => {
    const page = await d.signInAtIdp('dave');
    const dave = (await d.usersRow('dave'))!;
    assert.equal((await d.api('PATCH', `/api/v1/users/${dave.id}`, { disabled: true })).status, 200);
    // current() refuses a disabled user's sessions at once; the rows are revoked by the
    // users.changed listener after the PATCH commits (on every replica): wait for it.
    await eventually('their browser sessions are revoked', async () => {
      const [open] = await d.db.query<{ n: string }>('SELECT count(*) AS n FROM browser_sessions WHERE user_id = $1 AND revoked_at IS NULL', [dave.id]);
      return Number(open.n) === 0 ? true : undefined;
    }, 10_000);
    await page.reload();
    assert.equal(await page.locator('h1').textContent(), 'Sign in');
    await page.goto(`${d.balancer.url}/login/team`);
    if (await page.locator('input[name=login]').count()) await idpSignIn(page, 'dave');
    await page.waitForURL(/\/login/);
    assert.equal(await d.errorCode(page), 'user_disabled');
  });

  it('local accounts: created by an admin, signed in through the form (keyboard only), return_to kept', async () => {
    const created = await d.api('POST', '/api/v1/local-accounts', { username: 'erin', password: 'a long local password', email: 'erin@example.com', displayName: 'Erin' });
    assert.equal(created.status, 201, JSON.stringify(created.json));
    assert.equal((await d.api('POST', '/api/v1/local-accounts', { username: 'erin', password: 'another long password' })).status, 409);
    const short = await d.api('POST', '/api/v1/local-accounts', { username: 'frank', password: 'short' });
    assert.equal(short.status, 400);
    assert.match(String((short.json.error as { message: string }).message), /password: expected at least 12 characters/);
    const page = await d.newPage();
    await page.goto(`${d.balancer.url}/login?return_to=${encodeURIComponent('/login?from=local')}`);
    await page.locator('#username').focus();
    await page.keyboard.type('erin');
    await page.keyboard.press('Tab');
    await page.keyboard.type('a long local password');
    await page.keyboard.press('Enter');
    await page.waitForURL(`${d.balancer.url}/login?from=local`);
    assert.match((await page.locator('main').textContent()) ?? '', /signed in to Gatehouse as Erin/);
  });

  it('IdP groups keep following the IdP: leaving the admins group removes the role at the next sign-in', async () => {
    await d.signInAtIdp('alice');
    assert.deepEqual((await d.usersRow('alice'))!.roles.sort(), ['admin', 'member']);
    d.accounts.alice = { ...d.accounts.alice, groups: ['eng'] };
    await d.signInAtIdp('alice');
    const alice = (await d.usersRow('alice'))!;
    assert.deepEqual(alice.roles, ['member']);
    assert.deepEqual(alice.groups, ['eng']);
  });

  it('one user per person: an IdP sign-in links to the local account with the same admin-set email, only when the IdP verified it', async () => {
    const created = await d.api('POST', '/api/v1/local-accounts', { username: 'gina', password: 'gina has a long password', email: 'gina@example.com' });
    assert.equal(created.status, 201);
    await d.signInAtIdp('gina');
    const rows = await d.db.query<{ id: string }>("SELECT id FROM users WHERE email = 'gina@example.com'");
    assert.deepEqual(rows.map((r) => r.id), [created.json.userId], 'no second users row');
    const identities = await d.db.query<{ provider: string }>('SELECT provider FROM login_identities WHERE user_id = $1 ORDER BY provider', [created.json.userId]);
    assert.deepEqual(identities.map((r) => r.provider), ['local', 'team']);
  });
});
