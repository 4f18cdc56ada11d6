import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.js';

const load = (env: Record<string, string>) => loadConfig(env, null);

function errorsOf(env: Record<string, string>): string[] {
  const result = load(env);
  assert.equal(result.ok, false, 'expected the configuration to be rejected');
  return result.ok ? [] : result.errors;
}

describe('configuration', () => {
  it('applies documented defaults when nothing is set', () => {
    const result = load({});
    assert.ok(result.ok);
    const { config } = result;
    assert.equal(config.http.port, 3000);
    assert.equal(config.http.host, '127.0.0.1');
    assert.equal(config.http.publicUrl, 'http://localhost:3000');
    assert.equal(config.http.maxRequestBytes, 10 * 1024 * 1024);
    assert.equal(config.http.requestTimeoutMs, 300_000);
    assert.equal(config.database.url, undefined);
    assert.equal(config.database.migrate, true);
    assert.equal(config.database.embedded.dir, './.data/postgres');
    assert.equal(config.log.pretty, true, 'development logs are pretty by default');
  });

  it('names the variable, what is accepted and what was given', () => {
    assert.deepEqual(errorsOf({ PORT: 'abc' }), ['PORT: expected an integer 1-65535, got "abc"']);
    assert.deepEqual(errorsOf({ PORT: '70000' }), ['PORT: expected an integer 1-65535, got "70000"']);
  });

  it('reports every bad variable, one line each', () => {
    const errors = errorsOf({
      PORT: '3.5',
      LOG_LEVEL: 'loud',
      HTTP_ENABLE_CORS: 'maybe',
      HTTP_MAX_REQUEST_SIZE: 'ten megabytes',
      DATABASE_URL: 'mysql://localhost/db',
      PUBLIC_URL: 'not a url',
    });
    assert.deepEqual(errors.sort(), [
      'DATABASE_URL: expected a postgres or postgresql URL, got "mysql://localhost/db"',
      'HTTP_ENABLE_CORS: expected true or false, got "maybe"',
      'HTTP_MAX_REQUEST_SIZE: expected a size such as 512kb, 10mb or a byte count (1024-1073741824 bytes), got "ten megabytes"',
      'LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'PORT: expected an integer 1-65535, got "3.5"',
      'PUBLIC_URL: expected a http or https URL, got "not a url"',
    ]);
  });

  it('parses sizes, booleans, lists and URLs in the seed formats', () => {
    const result = load({
      HTTP_MAX_REQUEST_SIZE: '4mb',
      HTTP_ENABLE_CORS: 'TRUE',
      HTTP_CORS_ORIGINS: 'https://a.example.com, https://b.example.com',
      DB_MIGRATE: '0',
      PUBLIC_URL: 'https://mcp.example.com/',
      DATABASE_URL: 'postgres://u:p@db:5432/gatehouse',
      NODE_ENV: 'production',
      HTTP_TRUST_PROXY: '10.0.0.0/8,127.0.0.1',
      GATEHOUSE_ENCRYPTION_KEYS: 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=',
    });
    assert.ok(result.ok);
    const { config } = result;
    assert.equal(config.http.maxRequestBytes, 4 * 1024 * 1024);
    assert.equal(config.http.cors.enabled, true);
    assert.deepEqual(config.http.cors.origins, ['https://a.example.com', 'https://b.example.com']);
    assert.equal(config.database.migrate, false);
    assert.equal(config.http.publicUrl, 'https://mcp.example.com', 'no trailing slash');
    assert.equal(config.database.url, 'postgres://u:p@db:5432/gatehouse');
    assert.equal(config.log.pretty, false, 'production logs are JSON');
    assert.deepEqual(config.http.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
  });

  it('treats an empty value as unset', () => {
    const result = load({ PORT: '', LOG_LEVEL: '  ' });
    assert.ok(result.ok);
    assert.equal(result.config.http.port, 3000);
    assert.equal(result.config.log.level, 'info');
  });

  it('stops the process before it listens, exit code not 0, one line per bad variable', () => {
    const run = spawnSync(process.execPath, ['dist/main.js'], {
      env: { PATH: process.env.PATH, PORT: 'abc', LOG_LEVEL: 'loud', GATEHOUSE_ENV_FILE: '/nonexistent' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /^ {2}PORT: expected an integer 1-65535, got "abc"$/m);
    assert.match(run.stderr, /^ {2}LOG_LEVEL: expected one of .*, got "loud"$/m);
    assert.doesNotMatch(run.stdout + run.stderr, /listening/i);
  });

  it('refuses authentication settings that cannot work, naming the variable, never echoing a secret', () => {
    assert.deepEqual(errorsOf({ MCP_AUTH_REQUIRE: 'true' }), [
      'MCP_AUTH_REQUIRE: is true but MCP_AUTH_STRATEGY is only "none", which authenticates nobody; add bearer, api_key, oauth2 or trusted_header',
    ]);
    assert.match(errorsOf({ MCP_AUTH_STRATEGY: 'none,api_key', MCP_AUTH_REQUIRE: 'true' })[0], /^MCP_AUTH_REQUIRE: .*includes "none"/);
    assert.deepEqual(errorsOf({ MCP_AUTH_STRATEGY: 'bearer,kerberos' }), [
      'MCP_AUTH_STRATEGY: expected one or a comma-separated list of none, bearer, api_key, oauth2, trusted_header, got "bearer,kerberos"',
    ]);
    assert.deepEqual(errorsOf({ MCP_AUTH_STRATEGY: 'bearer' }), ['MCP_JWT_SECRET: required (or MCP_JWT_JWKS_URL) when MCP_AUTH_STRATEGY includes bearer']);
    const short = errorsOf({ MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_SECRET: 'hunter2-is-short' });
    assert.deepEqual(short, ['MCP_JWT_SECRET: expected at least 32 characters, got a value of 16 characters (not shown)']);
    assert.match(errorsOf({ MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_JWKS_URL: 'https://idp.example.com/jwks' })[0], /^MCP_JWT_AUDIENCE: required with MCP_JWT_JWKS_URL/);
    assert.match(
      errorsOf({ MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_JWKS_URL: 'https://idp/jwks', MCP_JWT_AUDIENCE: 'a', MCP_JWT_ALGORITHM: 'HS256' })[0],
      /^MCP_JWT_ALGORITHM: HS256 includes an HMAC algorithm, which needs MCP_JWT_SECRET/,
    );
    assert.deepEqual(errorsOf({ MCP_AUTH_STRATEGY: 'oauth2' }), ['MCP_OAUTH_ISSUER: required when MCP_AUTH_STRATEGY includes oauth2']);
    assert.match(errorsOf({ MCP_AUTH_STRATEGY: 'trusted_header' })[0], /^AUTH_TRUSTED_PROXIES: required/);
    assert.match(errorsOf({ MCP_AUTH_STRATEGY: 'trusted_header', AUTH_TRUSTED_PROXIES: '10.0.0.0/33' })[0], /^AUTH_TRUSTED_PROXIES: expected .* CIDR/);
    const keys = errorsOf({ MCP_API_KEYS: 'long-enough-key-0123456789,short' });
    assert.equal(keys.length, 1);
    assert.ok(!keys[0].includes('long-enough-key') && !keys[0].includes('short,') && keys[0].startsWith('MCP_API_KEYS: expected'), keys[0]);
  });

  it('derives authentication defaults: none is open, anything else requires credentials', () => {
    const open = load({});
    assert.ok(open.ok);
    assert.deepEqual(open.config.auth.strategies, ['none']);
    assert.equal(open.config.auth.require, false);
    assert.deepEqual(open.config.auth.session, { enabled: true, requireForSession: false, requireForOperations: true });
    const keys = load({ MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: 'a-static-key-0123456789,another-static-key-0123' });
    assert.ok(keys.ok);
    assert.equal(keys.config.auth.require, true);
    assert.equal(keys.config.auth.staticApiKeys.length, 2);
    const jwt = load({ MCP_AUTH_STRATEGY: 'bearer', MCP_JWT_SECRET: 'x'.repeat(32), PUBLIC_URL: 'https://mcp.example.com/' });
    assert.ok(jwt.ok);
    assert.deepEqual(jwt.config.auth.jwt.algorithms, ['HS256', 'HS384', 'HS512'], 'a secret alone never admits public-key algorithms');
    // No gateway-wide oauth2 audience by default: tokens must name the resource they are used on.
    assert.deepEqual(jwt.config.auth.oauth.audience, []);
    assert.equal(jwt.config.http.publicUrl, 'https://mcp.example.com');
    assert.equal(jwt.config.auth.jwt.requireExp, true);
    const lenient = load({ MCP_JWT_REQUIRE_EXP: 'false' });
    assert.ok(lenient.ok);
    assert.equal(lenient.config.auth.jwt.requireExp, false);
  });

  it('requires an encryption key ring in production, and names a bad key by id without echoing it', () => {
    assert.match(errorsOf({ NODE_ENV: 'production' })[0], /^GATEHOUSE_ENCRYPTION_KEYS: required in production/);
    const short = Buffer.alloc(24, 7).toString('base64');
    const [error] = errorsOf({ GATEHOUSE_ENCRYPTION_KEYS: `k2:${short}` });
    assert.match(error, /^GATEHOUSE_ENCRYPTION_KEYS: .*"k2" is 24 bytes; expected 32 bytes/);
    assert.ok(!error.includes(short), 'the key is not echoed');
    const ring = load({ NODE_ENV: 'production', GATEHOUSE_ENCRYPTION_KEYS: `k2:${Buffer.alloc(32, 1).toString('base64')}, k1:${Buffer.alloc(32, 2).toString('base64')}` });
    assert.ok(ring.ok);
  });
});
