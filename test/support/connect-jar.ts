import assert from 'node:assert/strict';

/** The local password the connect tests give their Gatehouse accounts. */
export const CONNECT_TEST_PASSWORD = 'a long local password for connect tests';
const PASSWORD = CONNECT_TEST_PASSWORD;

/** A browser without a browser: one cookie jar (names differ between Gatehouse and the AS), manual redirects. */
export class Jar {
  private readonly cookies = new Map<string, string>();

  async request(method: string, url: string, form?: Record<string, string>) {
    const res = await fetch(url, {
      method,
      redirect: 'manual',
      headers: { cookie: [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '), ...(form ? { 'content-type': 'application/x-www-form-urlencoded', origin: new URL(url).origin } : {}) },
      body: form ? new URLSearchParams(form).toString() : undefined,
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const at = pair.indexOf('=');
      if (/max-age=0/i.test(line)) this.cookies.delete(pair.slice(0, at));
      else this.cookies.set(pair.slice(0, at), pair.slice(at + 1));
    }
    const text = await res.text();
    return { status: res.status, location: res.headers.get('location'), headers: res.headers, text, error: /data-error="([a-z_]+)"/.exec(text)?.[1] };
  }

  /** Signs in with a Gatehouse password at `base`. */
  async signIn(base: string, username: string): Promise<void> {
    const page = await this.request('GET', `${base}/login`);
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.text)![1];
    const res = await this.request('POST', `${base}/login/local`, { csrf, username, password: PASSWORD, return_to: '/login' });
    assert.equal(res.status, 303, res.text.slice(0, 300));
  }

  /** Opens a connect link and presses Connect: the authorization server's URL Gatehouse redirected to. */
  async startConnect(link: string): Promise<URL> {
    const page = await this.request('GET', link);
    assert.equal(page.status, 200, page.text.slice(0, 500));
    const csrf = /name="csrf" value="([^"]+)"/.exec(page.text)![1];
    const ref = /name="ref" value="([^"]+)"/.exec(page.text)?.[1];
    const url = new URL(link);
    const res = await this.request('POST', `${url.origin}${url.pathname}`, { csrf, ...(ref ? { ref } : {}) });
    assert.equal(res.status, 303, res.text.slice(0, 500));
    return new URL(res.location!);
  }

  /** Follows the authorization server's redirects (it approves at once) up to the redirect back to Gatehouse. */
  async authorize(at: URL, gatehouse: string): Promise<URL> {
    let url = at;
    for (let hop = 0; hop < 10; hop++) {
      const res = await this.request('GET', url.href);
      assert.ok(res.location, `the authorization stopped at ${url.href} (HTTP ${res.status}) ${res.text.slice(0, 200)}`);
      url = new URL(res.location, url);
      if (url.href.startsWith(`${gatehouse}/upstream-oauth/callback`)) return url;
    }
    throw new Error('too many redirects');
  }
}

/** The -32042 error's first URL elicitation (2025-11-25), from whatever the SDK threw. */
export function elicitationOf(error: unknown): { url: string; message: string; elicitationId: string } {
  const e = error as { code?: number; data?: { elicitations?: { url: string; message: string; elicitationId: string }[] } };
  assert.equal(e.code, -32042, String(error));
  const first = e.data?.elicitations?.[0];
  assert.ok(first, 'the error carries the elicitation');
  return first;
}

