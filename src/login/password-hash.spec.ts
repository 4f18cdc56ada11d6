import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CURRENT_PARAMS, hashPassword, needsRehash, verifyPassword } from './password-hash.js';

describe('password hashes (scrypt)', () => {
  it('verify the right password only, with the parameters stored beside the hash', async () => {
    const stored = await hashPassword('correct horse battery staple');
    assert.deepEqual(stored.params, CURRENT_PARAMS);
    assert.equal(stored.salt.length, 16);
    assert.equal(await verifyPassword('correct horse battery staple', stored), true);
    assert.equal(await verifyPassword('correct horse battery stapler', stored), false);
    assert.equal(needsRehash(stored), false);
    assert.equal(needsRehash({ ...stored, params: { ...stored.params, N: 2 ** 14 } }), true);
  });
  it('salts: the same password hashes differently', async () => {
    const [a, b] = await Promise.all([hashPassword('same password!'), hashPassword('same password!')]);
    assert.notDeepEqual(a.hash, b.hash);
  });
});
