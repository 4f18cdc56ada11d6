import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { SignJWT, type JWTPayload } from 'jose';
import type { ApiKeysService } from '../../api-keys/api-keys.service.js';
import { AppError } from '../../common/errors/app-error.js';
import { loadConfig } from '../../config/load-config.js';
import type { CacheBus } from '../../database/replicated-cache.js';
import type { UsersService } from '../../users/users.service.js';
import { AuthenticationService, JWT_MEMO_MS } from '../authentication.service.js';
import { JwtVerifier } from '../jwt-verifier.js';
import type { Principal } from '../principal.js';
import type { ApiKeyStrategy } from './api-key.strategy.js';
import type { BearerStrategy } from './bearer.strategy.js';
import { credentialOf, resourceOf, type CredentialRequest } from './credential.js';
import type { OAuth2Strategy } from './oauth2.strategy.js';
import { TokenAuthenticator } from './token-principal.js';
import type { TrustedHeaderStrategy } from './trusted-header.strategy.js';

// The cached-JWT fast path (a cached token authenticates synchronously, its classification is
// remembered by AuthenticationService): what it must never skip. Each test goes through
// AuthenticationService with a strategy that validates as BearerStrategy/OAuth2Strategy do, on a
// fake clock, so a memo keyed or bounded wrongly (by header alone, past `exp`, past a revocation)
// makes it fail.

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
const SECRET = 'a-test-secret-of-at-least-32-characters!';
const PUBLIC_URL = 'http://localhost:3000';
const OWN_ISSUER = `${PUBLIC_URL}/oauth`;
const USER_ID = '00000000-0000-4000-8000-000000000001';

const user = { id: USER_ID, issuer: OWN_ISSUER, subject: USER_ID, email: null, displayName: 'Ada', roles: ['member'], groups: [], disabled: false };
const users = {
  resolve: () => Promise.resolve(user),
  byId: () => Promise.resolve(user),
  onLocalChange: () => () => undefined,
} as unknown as UsersService;
const bus: CacheBus = { subscribe: () => () => undefined };

function setUp(options: { audience?: string[]; staticKey?: string; apiKeyPrincipal?: Principal } = {}) {
  let now = Date.parse('2026-11-30T09:00:00Z');
  const clock = { now: () => now };
  const revoked = new Set<string>();
  const verifier = new JwtVerifier({ secret: SECRET, algorithms: ['HS256'], clockToleranceSec: 0, requireExp: true, now: clock.now });
  const tokens = new TokenAuthenticator(
    users,
    verifier,
    'bearer',
    { roles: 'roles', groups: 'groups', defaultIssuer: 'x', ownIssuer: OWN_ISSUER, ownRevocations: { isRevoked: (id) => revoked.has(id) } },
    { publicUrl: PUBLIC_URL, configured: options.audience ?? [], allowMissing: false },
    bus,
    clock,
  );
  // What BearerStrategy.validate does, on this clock.
  const strategy = { validate: (req: CredentialRequest) => tokens.principalFor(credentialOf(req, 'jwt').value, resourceOf(req)) };
  const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key,bearer', MCP_JWT_SECRET: SECRET, MCP_API_KEYS: 'a-static-key-0123456789', PUBLIC_URL }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  let staticChecks = 0;
  const keys = { isStaticKey: (token: string) => (staticChecks++, token === options.staticKey) } as unknown as ApiKeysService;
  // An API key strategy naming `apiKeyPrincipal` (another principal than the JWT's), when given.
  const apiKey = { validate: () => options.apiKeyPrincipal ?? Promise.reject(new Error('no API key strategy in this test')) };
  const service = new AuthenticationService(result.config, keys, strategy as unknown as BearerStrategy, {} as OAuth2Strategy, apiKey as unknown as ApiKeyStrategy, {} as TrustedHeaderStrategy);
  service.memoClock = clock.now;
  const sign = (claims: JWTPayload, expiresInSec: number) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.floor(now / 1000) + expiresInSec)
      .sign(new TextEncoder().encode(SECRET));
  const request = (token: string, url = '/mcp', extra: { headers?: Record<string, string>; rawHeaders?: string[]; query?: Record<string, string> } = {}) =>
    ({
      method: 'POST',
      url,
      headers: { authorization: `Bearer ${token}`, ...extra.headers },
      query: extra.query ?? {},
      raw: { rawHeaders: ['Authorization', `Bearer ${token}`, ...Object.entries(extra.headers ?? {}).flat(), ...(extra.rawHeaders ?? [])], socket: {} },
    }) as unknown as FastifyRequest;
  return { service, revoked, request, sign, advance: (ms: number) => (now += ms), staticChecks: () => staticChecks };
}

const refusedWith = (pattern: RegExp) => (e: unknown) => {
  assert.ok(e instanceof AppError, String(e));
  assert.equal(e.status, 401);
  assert.match(e.message, pattern);
  assert.match(String(e.headers?.['www-authenticate']), /error="invalid_token"/);
  return true;
};

/** principalOf, awaited when it is a promise; `sync` says whether it was not. */
async function principalOf(service: AuthenticationService, request: FastifyRequest): Promise<{ principal: Principal | null; sync: boolean }> {
  const found = service.principalOf(request);
  return { principal: await found, sync: !(found instanceof Promise) };
}

describe('a cached JWT: answered without a promise, nothing skipped', () => {
  it('is synchronous once cached, and classifies its header once (no HMAC against MCP_API_KEYS per request)', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 600);
    const first = await principalOf(t.service, t.request(token));
    assert.equal(first.sync, false, 'the first request verifies the token');
    assert.equal(first.principal?.userId, USER_ID);
    for (let i = 0; i < 3; i++) {
      const again = await principalOf(t.service, t.request(token));
      assert.equal(again.sync, true, 'a cached token is answered synchronously');
      assert.equal(again.principal, first.principal);
    }
    assert.equal(t.staticChecks(), 1, 'the header is classified once');
  });

  it('never outlives the token: refused at exp, cached or not', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 30);
    await t.service.authenticate(t.request(token));
    t.advance(29_000);
    assert.equal((await principalOf(t.service, t.request(token))).sync, true, 'still cached one second before exp');
    t.advance(1_000);
    await assert.rejects(t.service.authenticate(t.request(token)), refusedWith(/the token has expired/));
    await assert.rejects(t.service.authenticate(t.request(token)), refusedWith(/the token has expired/), 'and stays refused');
  });

  it('refuses an issued token at once when its grant is revoked, though its principal is cached', async () => {
    const t = setUp();
    const token = await t.sign({ sub: USER_ID, iss: OWN_ISSUER, aud: `${PUBLIC_URL}/mcp`, grant_id: 'grant-1' }, 600);
    assert.equal((await t.service.authenticate(t.request(token)))?.userId, USER_ID);
    assert.equal((await principalOf(t.service, t.request(token))).sync, true);
    t.revoked.add('grant-1');
    assert.throws(() => t.service.principalOf(t.request(token)), refusedWith(/has been revoked/), 'the very next request');
    t.revoked.delete('grant-1'); // (a revocation is never undone; this only shows the check is per request)
    assert.ok(await t.service.authenticate(t.request(token)));
  });

  it('checks the audience against each request’s resource, not against the first one seen', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp/github` }, 600);
    assert.ok(await t.service.authenticate(t.request(token, '/mcp/github')));
    assert.ok(t.service.principalOf(t.request(token, '/mcp/github')), 'cached for /mcp/github');
    for (const url of ['/mcp', '/mcp/other', '/api/v1/servers']) {
      await assert.rejects(t.service.authenticate(t.request(token, url)), refusedWith(/the token is not meant for/), url);
    }
    assert.ok(await t.service.authenticate(t.request(token, '/mcp/github?x=1')), 'still accepted on its own resource');
  });

  it('forgets a remembered header JWT_MEMO_MS after it entered: a token a client stopped using does not stay in the heap', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 3600);
    await t.service.authenticate(t.request(token));
    t.advance(JWT_MEMO_MS - 1);
    await t.service.authenticate(t.request(token));
    assert.equal(t.staticChecks(), 1, 'still remembered just before the bound');
    t.advance(1);
    await t.service.authenticate(t.request(token));
    assert.equal(t.staticChecks(), 2, 'classified again at the bound');
    assert.equal((t.service as unknown as { verifiedJwts: Map<string, unknown> }).verifiedJwts.size, 1, 'the stale entry was replaced, not kept beside');
  });

  it('remembers no header whose token was refused (a bad signature stays a bad signature)', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 600);
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${'A'.repeat(43)}`;
    for (let i = 0; i < 2; i++) await assert.rejects(t.service.authenticate(t.request(forged)), refusedWith(/signature is not valid/));
    assert.equal(t.staticChecks(), 2, 'classified again each time: only verified tokens are remembered');
  });

  // Review probes (round 2): a remembered header classification never skips a check a fresh
  // classification makes before or beside it.
  it('a remembered header still refuses query-string credentials, a repeated Authorization, and an X-API-Key naming someone else', async () => {
    const other = { id: 'key:other', kind: 'api_key', userId: 'someone-else', roles: ['admin'], groups: [], scopes: [] } as unknown as Principal;
    const t = setUp({ apiKeyPrincipal: other });
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 600);
    await t.service.authenticate(t.request(token));
    assert.equal((await principalOf(t.service, t.request(token))).sync, true, 'remembered');
    const status = (code: number, pattern: RegExp) => (e: unknown) => {
      assert.ok(e instanceof AppError, String(e));
      assert.equal(e.status, code);
      assert.match(e.message, pattern);
      assert.ok(!JSON.stringify([e.message, e.headers]).includes(token.split('.')[2]), 'no token in the error');
      return true;
    };
    await assert.rejects(t.service.authenticate(t.request(token, '/mcp', { query: { access_token: 'x' } })), status(400, /query string/));
    await assert.rejects(t.service.authenticate(t.request(token, '/mcp', { rawHeaders: ['authorization', 'Bearer another'] })), status(400, /more than one Authorization/));
    await assert.rejects(t.service.authenticate(t.request(token, '/mcp', { headers: { 'x-api-key': 'gatehouse_whatever' } })), status(400, /different principals/));
  });

  it('a JWT-shaped static MCP_API_KEYS key sent as Bearer is an API key every time, never remembered as a JWT', async () => {
    const jwtShaped = await setUp().sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 600);
    const t2 = setUp({ staticKey: jwtShaped, apiKeyPrincipal: { id: 'static', kind: 'api_key', roles: ['admin'], groups: [], scopes: [] } as unknown as Principal });
    for (let i = 0; i < 3; i++) assert.equal((await t2.service.authenticate(t2.request(jwtShaped)))?.id, 'static');
    assert.equal(t2.staticChecks(), 3, 'classified afresh each time');
  });

  it('a refused token on long URLs (any query string) pins no memory in the request-resource memo; short URLs are still remembered', async () => {
    const t = setUp();
    const garbage = 'aaaa.bbbb.cccc'; // JWT-shaped: its request's resource is looked up before it is verified
    for (let i = 0; i < 1_200; i++) {
      await assert.rejects(t.service.authenticate(t.request(garbage, `/mcp?pad=${'y'.repeat(8_000)}${i}`)), (e: unknown) => e instanceof AppError && e.status === 401);
    }
    await assert.rejects(t.service.authenticate(t.request(garbage, '/mcp/github')));
    const resources = (t.service as unknown as { resources: Map<string, unknown> }).resources;
    let chars = 0;
    for (const url of resources.keys()) chars += url.length;
    assert.ok(chars < 100_000, `the memo holds ${chars} characters of URLs from refused requests`);
    assert.ok(resources.has('/mcp/github'), 'a short URL is remembered');
  });

  it('one valid token sent with padded Authorization headers is remembered once, not once per padding', async () => {
    const t = setUp();
    const token = await t.sign({ sub: 'ada', iss: 'https://idp', aud: `${PUBLIC_URL}/mcp` }, 600);
    const padded = (i: number) =>
      ({ method: 'POST', url: '/mcp', headers: { authorization: `Bearer ${' '.repeat(i % 7)}${token}${' '.repeat(i)}` }, query: {}, raw: { rawHeaders: [], socket: {} } }) as unknown as FastifyRequest;
    for (let i = 0; i < 300; i++) assert.equal((await t.service.authenticate(padded(i)))?.userId, USER_ID, 'accepted as before');
    const memo = (t.service as unknown as { verifiedJwts: Map<string, unknown> }).verifiedJwts;
    let chars = 0;
    for (const header of memo.keys()) chars += header.length;
    assert.ok(memo.size <= 1 && chars <= token.length + 7, `${memo.size} headers (${chars} characters) remembered for one token`);
  });
});
