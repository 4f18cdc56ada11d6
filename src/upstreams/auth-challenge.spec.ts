import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { authErrorIn, fetchObservingAuth, parseBearerChallenge, UpstreamAuthError } from './auth-challenge.js';

describe('upstream Bearer challenges', () => {
  it('parses RFC 6750 / RFC 9728 parameters, quoted or not, and only of the Bearer scheme', () => {
    assert.deepEqual(parseBearerChallenge('Bearer error="insufficient_scope", scope="read admin", resource_metadata="https://x/.well-known/oauth-protected-resource/mcp"'), {
      error: 'insufficient_scope',
      scopes: ['read', 'admin'],
      resourceMetadata: 'https://x/.well-known/oauth-protected-resource/mcp',
    });
    assert.deepEqual(parseBearerChallenge('Bearer error=invalid_token'), { error: 'invalid_token' });
    assert.deepEqual(parseBearerChallenge('Basic realm="x"'), {});
    assert.deepEqual(parseBearerChallenge('Basic realm="x", Bearer scope="a\\"b"'), { scopes: ['a"b'] });
    assert.deepEqual(parseBearerChallenge(undefined), {});
  });

  it('turns a 401/403 answer into an UpstreamAuthError with its challenge, in its own words', async () => {
    const f = fetchObservingAuth(() => Promise.resolve(new Response('{"error":"secret-looking text"}', { status: 403, headers: { 'www-authenticate': 'Bearer error="insufficient_scope", scope="admin"' } })));
    const error = await f('http://x/mcp').then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(error instanceof UpstreamAuthError);
    assert.equal(error.status, 403);
    assert.deepEqual(error.challenge.scopes, ['admin']);
    assert.equal(error.message, 'HTTP 403 Forbidden (insufficient_scope)');
    const ok = await fetchObservingAuth(() => Promise.resolve(new Response('ok', { status: 200 })))('http://x');
    assert.equal(ok.status, 200);
    assert.equal(authErrorIn(new Error('wrapped', { cause: error })), error);
  });
});
