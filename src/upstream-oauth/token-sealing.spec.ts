import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { KeyRing, SecretDecryptError } from '../secrets/secret-crypto.js';
import { openField, sealField } from './token-sealing.js';

const ring = () => new KeyRing([{ id: 'k1', key: randomBytes(32) }]);

describe('upstream OAuth token sealing', () => {
  it('opens for the same owner, server and field, and stores nothing readable', () => {
    const r = ring();
    const token = `at-${randomBytes(16).toString('hex')}`;
    const sealed = sealField(r, 'user-1', 'linear', 'access_token', token);
    assert.match(sealed, /^k1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    assert.ok(!sealed.includes(token) && !sealed.includes(Buffer.from(token).toString('base64url')));
    assert.equal(openField(r, 'user-1', 'linear', 'access_token', sealed), token);
  });

  it('a value copied to another user, server or field does not open', () => {
    const r = ring();
    const sealed = sealField(r, 'user-1', 'linear', 'refresh_token', 'rt-secret');
    assert.throws(() => openField(r, 'user-2', 'linear', 'refresh_token', sealed), SecretDecryptError);
    assert.throws(() => openField(r, '*', 'linear', 'refresh_token', sealed), SecretDecryptError, 'not as the shared connection either');
    assert.throws(() => openField(r, 'user-1', 'github', 'refresh_token', sealed), SecretDecryptError);
    assert.throws(() => openField(r, 'user-1', 'linear', 'access_token', sealed), SecretDecryptError);
    assert.throws(() => openField(r, 'user-1', 'linear', 'client_secret', sealed), SecretDecryptError);
  });

  it('a secret sealed for the secrets store (same owner and server) does not open as a connection field', () => {
    const r = ring();
    const s = r.seal('value', { owner: 'user-1', server: 'linear', name: 'access_token' });
    const stored = `${s.keyId}.${s.nonce.toString('base64url')}.${s.ciphertext.toString('base64url')}`;
    assert.throws(() => openField(r, 'user-1', 'linear', 'access_token', stored), SecretDecryptError);
  });

  it('an altered or malformed value is refused without quoting it', () => {
    const r = ring();
    const sealed = sealField(r, 'user-1', 'linear', 'access_token', 'at');
    const parts = sealed.split('.');
    const flipped = Buffer.from(parts[2], 'base64url');
    flipped[0] ^= 1;
    assert.throws(() => openField(r, 'user-1', 'linear', 'access_token', `${parts[0]}.${parts[1]}.${flipped.toString('base64url')}`), SecretDecryptError);
    assert.throws(() => openField(r, 'user-1', 'linear', 'access_token', 'garbage'), /the sealed access_token of server "linear" is malformed/);
  });
});
