import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REDACTED, redactDeep, redactUrl } from './redact.js';

describe('redactDeep', () => {
  it('replaces credential-like fields at any depth and keeps the rest', () => {
    const input = {
      user: 'ada',
      password: 'hunter2',
      nested: { apiKey: 'k1', api_key: 'k2', clientSecret: 's', refresh_token: 't', keyId: 'visible', list: [{ token: 'x' }] },
      headers: { authorization: 'Bearer abc', cookie: 'sid=1', 'x-api-key': 'gh_123', 'user-agent': 'curl' },
    };
    assert.deepEqual(redactDeep(input), {
      user: 'ada',
      password: REDACTED,
      nested: { apiKey: REDACTED, api_key: REDACTED, clientSecret: REDACTED, refresh_token: REDACTED, keyId: 'visible', list: [{ token: REDACTED }] },
      headers: { authorization: REDACTED, cookie: REDACTED, 'x-api-key': REDACTED, 'user-agent': 'curl' },
    });
  });

  it('does not mutate its input and survives cycles by depth', () => {
    const input: Record<string, unknown> = { secret: 's' };
    input.self = input;
    const out = redactDeep(input) as Record<string, unknown>;
    assert.equal(input.secret, 's');
    assert.equal(out.secret, REDACTED);
  });
});

describe('redactUrl', () => {
  it('masks sensitive query parameters only', () => {
    assert.equal(redactUrl('/mcp?token=abc&x=1'), `/mcp?token=${encodeURIComponent(REDACTED)}&x=1`);
    assert.equal(redactUrl('/cb?code=c&state=s'), `/cb?code=${encodeURIComponent(REDACTED)}&state=${encodeURIComponent(REDACTED)}`);
    assert.equal(redactUrl('/healthz'), '/healthz');
    assert.equal(redactUrl('/x?page=2'), '/x?page=2');
    assert.equal(redactUrl('/mcp?sig=s&auth=a&page=2'), `/mcp?sig=${encodeURIComponent(REDACTED)}&auth=${encodeURIComponent(REDACTED)}&page=2`);
  });
});
