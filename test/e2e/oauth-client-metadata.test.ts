import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { SafeFetch } from '../../src/common/http/safe-fetch.js';
import { OAuthProviderService } from '../../src/oauth-server/oauth-provider.service.js';
import { SIGNED_IN_USER_RESOLVER, type SignedInUserSlot } from '../../src/oauth-server/signed-in-user.js';
import { UsersService } from '../../src/users/users.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { AsClient, consentInBrowser, launchChromium, pkce, redirectUri, TestSignIn } from '../support/oauth.js';

const MAX_BYTES = 5 * 1024;

/** A self-signed certificate for 127.0.0.1 (openssl), its PEM doubling as the CA a test fetcher trusts. */
function selfSigned(): { key: string; cert: string } {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-cimd-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', join(dir, 'k.pem'), '-out', join(dir, 'c.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
    return { key: readFileSync(join(dir, 'k.pem'), 'utf8'), cert: readFileSync(join(dir, 'c.pem'), 'utf8') };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Client ID Metadata Documents (MCP authorization spec 2025-11-25, "Client ID Metadata
 * Documents"; draft-ietf-oauth-client-id-metadata-document): the `client_id` is an https URL
 * Gatehouse fetches with its SSRF-safe client. The documents are served by an https server on
 * 127.0.0.1 with a self-signed certificate; the app's fetcher trusts it and allows loopback
 * (GATEHOUSE_OAUTH_FETCH_ALLOW_PRIVATE=true) except where the test proves the refusal.
 */
describe('Client ID Metadata Documents', () => {
  let db: TestDatabase;
  let app: TestApp;
  let balancer: Balancer;
  let docs: Server;
  let origin: string;
  let browser: Browser;
  let alice: string;
  let as: AsClient;
  let tls: { key: string; cert: string };
  /** Paths the document server was asked for, in order. */
  const served: string[] = [];
  let redirect: string;

  const doc = (path: string, extra: Record<string, unknown> = {}) => ({ client_id: `${origin}${path}`, client_name: 'Metadata Client', redirect_uris: [redirect], token_endpoint_auth_method: 'none', ...extra });

  before(async () => {
    redirect = await redirectUri('/metadata/cb');
    tls = selfSigned();
    docs = createServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      const path = req.url ?? '/';
      served.push(path);
      const json = (value: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      if (path === '/big.json') return json(doc(path, { description: 'x'.repeat(MAX_BYTES) }));
      if (path === '/moved.json') return res.writeHead(302, { location: `${origin}/good.json` }).end();
      if (path === '/mismatch.json') return json(doc('/someone-else.json'));
      return json(doc(path));
    });
    await new Promise<void>((resolve) => docs.listen(0, '127.0.0.1', resolve));
    origin = `https://127.0.0.1:${(docs.address() as AddressInfo).port}`;
    db = await createTestDatabase();
    balancer = await Balancer.start();
    app = await startTestApp(db.url, {
      PUBLIC_URL: balancer.url,
      MCP_AUTH_STRATEGY: 'oauth2,api_key',
      MCP_API_KEYS: 'static-bootstrap-key-0123456789abcdef',
      GATEHOUSE_OAUTH_SERVER: 'true',
      GATEHOUSE_OAUTH_FETCH_ALLOW_PRIVATE: 'true',
      GATEHOUSE_OAUTH_FETCH_MAX_SIZE: String(MAX_BYTES),
    });
    balancer.pointAt(app.url);
    app.app.get<SignedInUserSlot>(SIGNED_IN_USER_RESOLVER).use(new TestSignIn());
    const { fetch: settings } = app.config.oauthServer;
    app.app.get(OAuthProviderService).useFetcher(new SafeFetch({ allowPrivate: settings.allowPrivate, maxBytes: settings.maxBytes, timeoutMs: settings.timeoutMs, ca: tls.cert }));
    alice = (await app.app.get(UsersService).resolve({ issuer: 'test-idp', subject: 'alice', email: 'alice@example.com', displayName: 'Alice', groups: [] })).id;
    browser = await launchChromium();
    as = new AsClient(app.config.http.publicUrl);
  });

  after(async () => {
    await browser?.close();
    await app?.shutdown('test');
    await balancer?.close();
    await db?.drop();
    docs?.closeAllConnections();
    await new Promise<void>((resolve) => (docs ? docs.close(() => resolve()) : resolve()));
  });

  /** GET /oauth/authorize for metadata-document client `clientId`, without a browser: the error page when the client is refused. */
  async function authorizeAnswer(clientId: string): Promise<{ status: number; text: string }> {
    const res = await fetch(as.authorizeUrl(clientId, redirect, pkce().challenge), { redirect: 'manual' });
    return { status: res.status, text: await res.text() };
  }

  it('the positive path: a metadata-document client gets the consent page, a code, and a token that works on /mcp', async () => {
    const clientId = `${origin}/good.json`;
    const { verifier, challenge } = pkce();
    const flow = await consentInBrowser(browser, as.base, alice, as.authorizeUrl(clientId, redirect, challenge), redirect);
    assert.equal(flow.consentShown, true, 'always confirmed (confused-deputy rule)');
    assert.match(flow.pageText, /Metadata Client/);
    const code = flow.params.get('code');
    assert.ok(code, flow.params.toString());
    const t = await as.token({ grant_type: 'authorization_code', code, redirect_uri: redirect, client_id: clientId, code_verifier: verifier });
    assert.equal(t.status, 200, JSON.stringify(t.body));
    assert.equal((await AsClient.initialize(`${as.base}/mcp`, String(t.body.access_token))).status, 200);
  });

  it(`a document over GATEHOUSE_OAUTH_FETCH_MAX_SIZE (${MAX_BYTES} bytes) is refused`, async () => {
    const answer = await authorizeAnswer(`${origin}/big.json`);
    assert.equal(answer.status, 400);
    assert.match(answer.text, /invalid_client/);
    assert.ok(served.includes('/big.json'), 'it was fetched, then refused for its size');
  });

  it('a redirecting document URL is refused and the redirect is not followed', async () => {
    const before = served.filter((p) => p === '/good.json').length;
    const answer = await authorizeAnswer(`${origin}/moved.json`);
    assert.equal(answer.status, 400);
    assert.match(answer.text, /invalid_client/);
    assert.ok(served.includes('/moved.json'));
    assert.equal(served.filter((p) => p === '/good.json').length, before, 'the redirect target was never requested');
  });

  it('a document whose client_id is not its own URL is refused', async () => {
    const answer = await authorizeAnswer(`${origin}/mismatch.json`);
    assert.equal(answer.status, 400);
    assert.match(answer.text, /invalid_client_metadata/);
    assert.match(answer.text, /client_id does not match/);
  });

  it('with GATEHOUSE_OAUTH_FETCH_ALLOW_PRIVATE off, a document on a private address (loopback) is refused without a request', async () => {
    const { fetch: settings } = app.config.oauthServer;
    app.app.get(OAuthProviderService).useFetcher(new SafeFetch({ allowPrivate: false, maxBytes: settings.maxBytes, timeoutMs: settings.timeoutMs, ca: tls.cert }));
    try {
      const count = served.length;
      const answer = await authorizeAnswer(`${origin}/private.json`);
      assert.equal(answer.status, 400);
      assert.match(answer.text, /invalid_client/);
      assert.equal(served.length, count, 'nothing was requested from the private address');
      const named = await authorizeAnswer(`https://localhost:${new URL(origin).port}/private-by-name.json`);
      assert.equal(named.status, 400, 'a name resolving to loopback is refused too');
      assert.equal(served.length, count);
    } finally {
      app.app.get(OAuthProviderService).useFetcher(new SafeFetch({ allowPrivate: true, maxBytes: settings.maxBytes, timeoutMs: settings.timeoutMs, ca: tls.cert }));
    }
  });
});
