import assert from 'node:assert/strict';
import { afterEach, describe, it, mock } from 'node:test';
import type { FastifyRequest } from 'fastify';
import passport from 'passport';
import type { ApiKeysService } from '../api-keys/api-keys.service.js';
import { AppError } from '../common/errors/app-error.js';
import { loadConfig } from '../config/load-config.js';
import { AuthenticationService } from './authentication.service.js';
import { InvalidTokenError } from './jwt-verifier.js';
import { ANONYMOUS_PRINCIPAL, type Principal } from './principal.js';
import type { ApiKeyStrategy } from './strategies/api-key.strategy.js';
import type { BearerStrategy } from './strategies/bearer.strategy.js';
import type { CredentialRequest } from './strategies/credential.js';
import type { OAuth2Strategy } from './strategies/oauth2.strategy.js';
import type { TrustedHeaderStrategy } from './strategies/trusted-header.strategy.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

/** An AuthenticationService with API keys on, whose api_key strategy's `validate` is `validate`. */
function serviceWith(validate: (req: CredentialRequest) => Principal | false | Promise<Principal | false>) {
  const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key' }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const seen: CredentialRequest[] = [];
  const apiKey = { validate: (req: CredentialRequest) => (seen.push(req), validate(req)) } as unknown as ApiKeyStrategy;
  const service = new AuthenticationService(result.config, {} as ApiKeysService, {} as BearerStrategy, {} as OAuth2Strategy, apiKey, {} as TrustedHeaderStrategy);
  return { service, seen };
}

const request = (key: string) =>
  ({ method: 'POST', url: '/mcp', headers: { 'x-api-key': key }, query: {}, raw: { rawHeaders: ['X-API-Key', key], socket: { remoteAddress: '127.0.0.1' } } }) as unknown as FastifyRequest;

describe('AuthenticationService calls the chosen strategy directly', () => {
  afterEach(() => mock.restoreAll());

  it('returns the strategy’s principal without passport’s per-request authenticate machinery', async () => {
    const proto = passport.Passport.prototype as { authenticate: (...args: unknown[]) => unknown };
    const authenticate = mock.method(proto, 'authenticate');
    const principal: Principal = { ...ANONYMOUS_PRINCIPAL, id: 'key:k1', method: 'api_key' };
    const { service, seen } = serviceWith(() => Promise.resolve(principal));
    assert.equal(await service.authenticate(request('gatehouse_abc')), principal);
    assert.deepEqual(seen[0].credential, { kind: 'api_key', value: 'gatehouse_abc' }, 'the strategy receives the classified credential');
    assert.equal(seen[0].resource, undefined, 'and no resource: only JWT audiences are checked against it');
    assert.equal(authenticate.mock.callCount(), 0, 'no passport middleware built per request');
  });

  it('hands a JWT strategy the request’s resource (RFC 8707), also beside an X-API-Key', async () => {
    const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key,bearer', MCP_JWT_SECRET: 'x'.repeat(32) }, null);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    const principal: Principal = { ...ANONYMOUS_PRINCIPAL, id: 'user:u1', method: 'bearer' };
    const seen: CredentialRequest[] = [];
    const strategy = { validate: (req: CredentialRequest) => (seen.push(req), principal) };
    const keys = { isStaticKey: () => false } as unknown as ApiKeysService;
    const service = new AuthenticationService(result.config, keys, strategy as unknown as BearerStrategy, {} as OAuth2Strategy, strategy as unknown as ApiKeyStrategy, {} as TrustedHeaderStrategy);
    const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.c2ln';
    const bearer = (url: string, headers: Record<string, string> = {}) =>
      ({ method: 'POST', url, headers: { authorization: `Bearer ${jwt}`, ...headers }, query: {}, raw: { rawHeaders: ['Authorization', `Bearer ${jwt}`, ...Object.entries(headers).flat()], socket: {} } }) as unknown as FastifyRequest;
    assert.equal(service.principalOf(bearer('/mcp/github')), principal);
    assert.deepEqual(seen[0], { credential: { kind: 'jwt', value: jwt }, resource: { resource: 'http://localhost:3000/mcp/github', accepts: ['http://localhost:3000/mcp/github', 'http://localhost:3000/mcp'] } });
    seen.length = 0;
    assert.equal(await service.principalOf(bearer('/mcp', { 'x-api-key': 'k' })), principal);
    assert.deepEqual(
      seen.map((r) => [r.credential?.kind, r.resource?.resource]),
      [
        ['api_key', 'http://localhost:3000/mcp'],
        ['jwt', 'http://localhost:3000/mcp'],
      ],
      'both credentials are verified, with the resource',
    );
  });

  it('answers a strategy’s "no user" and its InvalidTokenError with a 401 challenge, other errors as thrown', async () => {
    const refused = serviceWith(() => Promise.resolve(false));
    await assert.rejects(refused.service.authenticate(request('x')), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.status, 401);
      assert.match(e.message, /the credentials are not valid/);
      assert.match(String(e.headers?.['www-authenticate']), /error="invalid_token"/);
      return true;
    });
    const invalid = serviceWith(() => Promise.reject(new InvalidTokenError('the API key has been revoked')));
    await assert.rejects(invalid.service.authenticate(request('x')), (e: unknown) => e instanceof AppError && e.status === 401 && /revoked/.test(e.message));
    const broken = new Error('database unreachable');
    const failing = serviceWith(() => Promise.reject(broken));
    await assert.rejects(failing.service.authenticate(request('x')), (e: unknown) => e === broken);
  });

  it('answers without a promise when the strategy does (a key checked in memory), with the same outcomes', () => {
    const principal: Principal = { ...ANONYMOUS_PRINCIPAL, id: 'key:k1', method: 'api_key' };
    assert.equal(serviceWith(() => principal).service.principalOf(request('gatehouse_abc')), principal);
    assert.equal(serviceWith(() => principal).service.principalOf({ ...request('k'), headers: {}, raw: { rawHeaders: [] } } as unknown as FastifyRequest), null, 'no credentials');
    assert.throws(
      () => serviceWith(() => false).service.principalOf(request('x')),
      (e: unknown) => e instanceof AppError && e.status === 401 && /the credentials are not valid/.test(e.message),
    );
    assert.throws(
      () =>
        serviceWith(() => {
          throw new InvalidTokenError('the API key has been revoked');
        }).service.principalOf(request('x')),
      (e: unknown) => e instanceof AppError && e.status === 401 && /revoked/.test(e.message),
    );
    const broken = new Error('database unreachable');
    assert.throws(
      () =>
        serviceWith(() => {
          throw broken;
        }).service.principalOf(request('x')),
      (e: unknown) => e === broken,
    );
  });

  it('still answers authenticate() with a promise, rejected on refusal, whatever the strategy', async () => {
    await assert.rejects(serviceWith(() => false).service.authenticate(request('x')), (e: unknown) => e instanceof AppError && e.status === 401);
    const principal: Principal = { ...ANONYMOUS_PRINCIPAL, id: 'key:k1', method: 'api_key' };
    assert.equal(await serviceWith(() => principal).service.authenticate(request('x')), principal);
  });
});
