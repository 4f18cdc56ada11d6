import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from './load-config.js';

const load = (env: Record<string, string>) => loadConfig(env, null);
const errorsOf = (env: Record<string, string>): string[] => {
  const result = load(env);
  assert.equal(result.ok, false, 'expected the configuration to be rejected');
  return result.ok ? [] : result.errors;
};
const SECRET = 'the-client-secret-that-must-not-leak';

describe('sign-in settings', () => {
  it('defaults: no providers, local passwords on, verified emails required, 12 h / 2 h sessions', () => {
    const result = load({});
    assert.ok(result.ok);
    const { login } = result.config;
    assert.deepEqual(login.providers, []);
    assert.equal(login.localEnabled, true);
    assert.equal(login.requireVerifiedEmail, true);
    assert.equal(login.sessionTtlMs, 12 * 3_600_000);
    assert.equal(login.sessionIdleMs, 2 * 3_600_000);
    assert.equal(login.maxFailuresPerAccount, 5);
  });

  it('GATEHOUSE_LOGIN_PROVIDERS: parses OIDC and OAuth2 entries, and the seed MCP_OAUTH_* names add provider "oauth"', () => {
    const result = load({
      GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'google', type: 'oidc', issuer: 'https://accounts.google.com', clientId: 'id', clientSecret: SECRET }]),
      MCP_OAUTH_CLIENT_ID: 'gh',
      MCP_OAUTH_CLIENT_SECRET: SECRET,
      MCP_OAUTH_AUTH_URL: 'https://github.com/login/oauth/authorize',
      MCP_OAUTH_TOKEN_URL: 'https://github.com/login/oauth/access_token',
      MCP_OAUTH_USERINFO_URL: 'https://api.github.com/user',
      GATEHOUSE_LOGIN_ALLOWED_DOMAINS: '@Example.com,corp.example.org',
      GATEHOUSE_LOGIN_GROUP_ROLES: 'gatehouse-admins=admin,eng=member',
    });
    assert.ok(result.ok, result.ok ? '' : result.errors.join());
    const { login } = result.config;
    assert.deepEqual(
      login.providers.map((p) => [p.key, p.type]),
      [
        ['google', 'oidc'],
        ['oauth', 'oauth2'],
      ],
    );
    assert.deepEqual(login.allowedDomains, ['example.com', 'corp.example.org']);
    assert.deepEqual(login.groupRoles, [
      { group: 'gatehouse-admins', role: 'admin' },
      { group: 'eng', role: 'member' },
    ]);
  });

  it('bad provider settings name the entry and field and never echo the value', () => {
    const notJson = errorsOf({ GATEHOUSE_LOGIN_PROVIDERS: `{"clientSecret":"${SECRET}"` });
    assert.equal(notJson.length, 1);
    assert.match(notJson[0], /^GATEHOUSE_LOGIN_PROVIDERS: expected a JSON array of providers such as .*\(this value is not JSON\), got a value of \d+ characters \(not shown\)$/);
    const badEntry = errorsOf({ GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'Bad Key', type: 'oidc', issuer: 'https://x', clientId: 'a', clientSecret: SECRET }]) });
    assert.match(badEntry[0], /^GATEHOUSE_LOGIN_PROVIDERS: expected a JSON array of providers \(entry \[0\]\.key: key: expected \[a-z\]/);
    const local = errorsOf({ GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'local', type: 'oidc', issuer: 'https://x', clientId: 'a' }]) });
    assert.match(local[0], /"local" is reserved/);
    const type = errorsOf({ GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([{ key: 'x', type: 'saml', clientId: 'a' }]) });
    assert.match(type[0], /type: expected "oidc" or "oauth2"/);
    const twice = errorsOf({ GATEHOUSE_LOGIN_PROVIDERS: JSON.stringify([0, 1].map(() => ({ key: 'x', type: 'oidc', issuer: 'https://x', clientId: 'a' }))) });
    assert.match(twice[0], /two providers share a key/);
    for (const line of [...notJson, ...badEntry]) assert.ok(!line.includes(SECRET), line);
    assert.deepEqual(errorsOf({ MCP_OAUTH_CLIENT_ID: 'gh' }), [
      'MCP_OAUTH_CLIENT_ID: MCP_OAUTH_CLIENT_ID, MCP_OAUTH_AUTH_URL, MCP_OAUTH_TOKEN_URL and MCP_OAUTH_USERINFO_URL go together (a plain OAuth2 login provider): set all four or none',
    ]);
    assert.match(errorsOf({ GATEHOUSE_LOGIN_GROUP_ROLES: 'admins' })[0], /^GATEHOUSE_LOGIN_GROUP_ROLES: expected a comma-separated list of <IdP group>=<role>/);
    assert.match(errorsOf({ GATEHOUSE_BROWSER_SESSION_IDLE: '5' })[0], /^GATEHOUSE_BROWSER_SESSION_IDLE: expected an integer 60000-/);
  });
});
