import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { BrowserSessionService } from '../../src/login/browser-session.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const ADMIN_KEY = 'static-admin-key-for-local-login-tests-0123456789';
const PASSWORD = 'a long local password';

/** A browser without a browser: keeps cookies, sends forms, never follows redirects. */
class Jar {
  private readonly cookies = new Map<string, string>();
  constructor(private readonly base: string) {}

  async request(method: string, path: string, form?: Record<string, string>, headers: Record<string, string> = {}) {
    const res = await fetch(`${this.base}${path}`, {
      method,
      redirect: 'manual',
      headers: {
        cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '),
        ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
        ...headers,
      },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      const [name, value] = [pair.slice(0, at), pair.slice(at + 1)];
      if (/max-age=0/i.test(line)) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, error: /data-error="([a-z_]+)"/.exec(text)?.[1] };
  }

  /** The CSRF token of the login page's form. */
  async csrf(): Promise<string> {
    const page = await this.request('GET', '/login');
    return /name="csrf" value="([^"]+)"/.exec(page.text)![1];
  }

  cookie(name: string): string | undefined {
    return this.cookies.get(name);
  }
}

describe('local accounts and browser sessions over HTTP: throttling, CSRF, open redirects, expiry', () => {
  let db: TestDatabase;
  let app: TestApp;
  let userId: string;
  const admin = (method: string, path: string, body?: unknown) =>
    fetch(`${app.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {
      MCP_AUTH_STRATEGY: 'api_key',
      MCP_API_KEYS: ADMIN_KEY,
      GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT: '3',
      // An IdP that is down (nothing listens on port 9 of this machine).
      GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'down', type: 'oidc', name: 'Offline IdP', issuer: 'http://127.0.0.1:9', clientId: 'c', clientSecret: 's' }]),
    });
    const res = await admin('POST', '/api/v1/local-accounts', { username: 'erin', password: PASSWORD, email: 'Erin@Example.com' });
    assert.equal(res.status, 201);
    userId = ((await res.json()) as { userId: string }).userId;
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('the login page: CSP without external sources, no framing, no caching, a CSRF cookie, the password form', async () => {
    const page = await new Jar(app.url).request('GET', '/login');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'none'.*frame-ancestors 'none'/);
    assert.equal(page.headers.get('cache-control'), 'no-store');
    assert.equal(page.headers.get('referrer-policy'), 'same-origin');
    assert.match(page.headers.getSetCookie().join('\n'), /gatehouse_csrf=.*HttpOnly.*SameSite=Strict/i);
    assert.match(page.text, /<label for="username">/);
    assert.doesNotMatch(page.text, /https?:\/\//, 'no external asset');
  });

  it('wrong passwords and unknown users get the same answer; the account is throttled after 3 failures, even with the right password', async () => {
    const jar = new Jar(app.url);
    const csrf = await jar.csrf();
    const unknown = await jar.request('POST', '/login/local', { csrf, username: 'nobody', password: PASSWORD });
    const wrong = await jar.request('POST', '/login/local', { csrf, username: 'erin', password: 'not the password' });
    assert.equal(unknown.status, 401);
    assert.equal(wrong.status, 401);
    assert.equal(unknown.error, 'invalid_credentials');
    const normalize = (text: string) => text.replace(/(value|nonce)="[^"]*"/g, '');
    assert.equal(normalize(wrong.text), normalize(unknown.text), 'same page whether or not the user exists');
    for (let i = 0; i < 2; i++) assert.equal((await jar.request('POST', '/login/local', { csrf, username: 'erin', password: `wrong ${i}` })).status, 401);
    const blocked = await jar.request('POST', '/login/local', { csrf, username: 'erin', password: PASSWORD });
    assert.equal(blocked.status, 429);
    assert.equal(blocked.error, 'throttled');
    assert.ok(Number(blocked.headers.get('retry-after')) > 0);
    assert.equal(jar.cookie('gatehouse_session'), undefined);
    // Throttling is kept in PostgreSQL (every replica sees it), keyed by account and address.
    const keys = (await db.query<{ key: string }>('SELECT key FROM login_throttle ORDER BY key')).map((r) => r.key);
    assert.ok(keys.includes('account:erin') && keys.some((k) => k.startsWith('address:')), keys.join());
    await db.query('DELETE FROM login_throttle');
  });

  it('a form without the CSRF token is refused', async () => {
    const jar = new Jar(app.url);
    await jar.csrf();
    const res = await jar.request('POST', '/login/local', { username: 'erin', password: PASSWORD });
    assert.equal(res.status, 403);
    assert.equal(res.error, 'csrf');
  });

  it('return_to never leaves Gatehouse (open redirect)', async () => {
    for (const evil of ['https://evil.example/', '//evil.example/x', '/\\evil.example', '/%09/evil.example']) {
      const jar = new Jar(app.url);
      const csrf = await jar.csrf();
      const res = await jar.request('POST', '/login/local', { csrf, username: 'erin', password: PASSWORD, return_to: evil });
      assert.equal(res.status, 303, evil);
      const location = res.headers.get('location')!;
      assert.ok(location.startsWith('/') && !location.startsWith('//') && !location.includes('\\'), `${evil} → ${location}`);
      assert.equal(new URL(location, app.url).origin, new URL(app.url).origin);
      // Signed in: GET /login?return_to=<evil> does not redirect off-site either.
      const again = await jar.request('GET', `/login?return_to=${encodeURIComponent(evil)}`);
      if (again.status === 303) assert.equal(new URL(again.headers.get('location')!, app.url).origin, new URL(app.url).origin, evil);
      else assert.equal(again.status, 200, evil);
    }
  });

  it('sessions: the cookie signs in; expiry, idle time, a new password and sign-out end it; only hashes are stored', async () => {
    const jar = new Jar(app.url);
    const csrf = await jar.csrf();
    const signIn = await jar.request('POST', '/login/local', { csrf, username: 'ERIN ', password: PASSWORD, return_to: '/interaction/abc' });
    assert.equal(signIn.status, 303);
    assert.equal(signIn.headers.get('location'), '/interaction/abc');
    const token = jar.cookie('gatehouse_session')!;
    const sessions = app.app.get(BrowserSessionService);
    const request = { headers: { cookie: `gatehouse_session=${token}` } } as never;
    const user = await sessions.current(request);
    assert.equal(user?.userId, userId);
    assert.deepEqual(user?.amr, ['pwd']);
    assert.equal(user?.idp, 'local');
    // Stored as SHA-256 of the cookie value, nothing else.
    const [row] = await db.query<{ id: string }>("SELECT id FROM browser_sessions WHERE token_hash = sha256(convert_to($1, 'UTF8'))", [token]);
    assert.equal((await db.query("SELECT 1 FROM browser_sessions WHERE encode(token_hash, 'escape') LIKE '%' || $1 || '%'", [token])).length, 0);
    assert.equal(user?.sessionId, row.id);

    await db.query("UPDATE browser_sessions SET expires_at = now() - interval '1 second' WHERE id = $1", [row.id]);
    assert.equal(await sessions.current(request), null, 'expired');
    await db.query("UPDATE browser_sessions SET expires_at = now() + interval '1 hour', last_seen_at = now() - interval '3 hours' WHERE id = $1", [row.id]);
    assert.equal(await sessions.current(request), null, 'idle longer than GATEHOUSE_BROWSER_SESSION_IDLE');
    await db.query('UPDATE browser_sessions SET last_seen_at = now() WHERE id = $1', [row.id]);
    assert.ok(await sessions.current(request), 'valid again');

    const reset = await admin('PUT', `/api/v1/users/${userId}/password`, { password: 'a brand new password' });
    assert.equal(reset.status, 200);
    assert.equal(await sessions.current(request), null, 'a new password ends password sessions');

    const csrf2 = await jar.csrf();
    assert.equal((await jar.request('POST', '/login/local', { csrf: csrf2, username: 'erin', password: 'a brand new password' })).status, 303);
    const page = await jar.request('GET', '/login');
    assert.match(page.text, /signed in to Gatehouse as <strong>erin@example.com<\/strong>/);
    const second = jar.cookie('gatehouse_session')!;
    assert.ok(await sessions.current({ headers: { cookie: `gatehouse_session=${second}` } } as never));
    const logout = await jar.request('POST', '/logout', { csrf: csrf2 });
    assert.equal(logout.status, 303);
    assert.equal(jar.cookie('gatehouse_session'), undefined);
    assert.equal(await sessions.current({ headers: { cookie: `gatehouse_session=${second}` } } as never), null, 'signed out');
  });

  it('admin API: validation names the field; unknown users are 404; removing a password; members cannot', async () => {
    const bad = await admin('POST', '/api/v1/local-accounts', { username: 'Bad Name', password: 'x' });
    assert.equal(bad.status, 400);
    const message = ((await bad.json()) as { error: { message: string } }).error.message;
    assert.match(message, /username: expected lower-case letters/);
    assert.match(message, /password: expected at least 12 characters/);
    const nul = await admin('POST', '/api/v1/local-accounts', { username: 'nul', password: PASSWORD, displayName: 'a\u0000b' });
    assert.equal(nul.status, 400);
    assert.match(((await nul.json()) as { error: { message: string } }).error.message, /displayName: contains a NUL character/);
    assert.equal((await admin('PUT', '/api/v1/users/00000000-0000-4000-8000-000000000000/password', { password: PASSWORD, username: 'ghost' })).status, 404);
    assert.equal((await admin('PUT', `/api/v1/users/not-a-uuid/password`, { password: PASSWORD })).status, 404);
    assert.equal((await admin('DELETE', `/api/v1/users/${userId}/password`)).status, 204);
    assert.equal((await admin('DELETE', `/api/v1/users/${userId}/password`)).status, 404);
    const jar = new Jar(app.url);
    const csrf = await jar.csrf();
    assert.equal((await jar.request('POST', '/login/local', { csrf, username: 'erin', password: 'a brand new password' })).status, 401);
    const anonymous = await fetch(`${app.url}/api/v1/local-accounts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(anonymous.status, 401);
  });

  it('unknown providers, an IdP that is down and stray callbacks get a page, not a crash', async () => {
    const jar = new Jar(app.url);
    const down = await jar.request('GET', '/login/down');
    assert.equal(down.status, 502);
    assert.equal(down.error, 'idp_error');
    assert.match(down.text, /Offline IdP cannot be reached right now/);
    const stray = await jar.request('GET', '/login/down/callback?code=x&state=y');
    assert.equal(stray.status, 400);
    assert.equal(stray.error, 'state_mismatch');
    const arrays = await jar.request('GET', '/login/down/callback?code=x&state=y&state=z');
    assert.equal(arrays.error, 'state_mismatch');
    assert.equal((await jar.request('GET', '/login/nope')).error, 'unknown_provider');
    assert.equal((await jar.request('GET', '/login/nope/callback?code=x&state=y')).status, 404);
  });

  it('no password or session cookie reaches the logs', () => {
    assert.ok(!app.logs.raw.includes(PASSWORD));
    assert.ok(!app.logs.raw.includes('a brand new password'));
  });
});
