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

describe('redactDeep without anything to redact', () => {
  it('returns plain objects and arrays as they are, and copies only the branch that changes', () => {
    const clean = { requestId: 'r', req: { method: 'POST', headers: { accept: 'x' } }, list: [1, { a: 2 }] };
    assert.equal(redactDeep(clean), clean);
    const mixed = { keep: { a: 1 }, change: { token: 't', b: 2 }, arr: [{ ok: 1 }, { secret: 's' }] };
    const out = redactDeep(mixed) as typeof mixed;
    assert.equal(out.keep, mixed.keep);
    assert.deepEqual(out, { keep: { a: 1 }, change: { token: REDACTED, b: 2 }, arr: [{ ok: 1 }, { secret: REDACTED }] });
    assert.equal(out.arr[0], mixed.arr[0]);
    assert.equal(mixed.change.token, 't');
  });

  it('still turns class instances into plain objects of their own fields', () => {
    class Holder {
      constructor(readonly visible: string) {}
      toJSON() {
        return { leaked: true };
      }
    }
    assert.deepEqual(redactDeep({ h: new Holder('v') }), { h: { visible: 'v' } });
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
