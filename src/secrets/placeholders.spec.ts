import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blank, fingerprint, hasPlaceholders, placeholderProblems, resolve, secretNames } from './placeholders.js';

const alice = { owner: 'u1', userId: 'u1', email: 'alice@example.com' };

describe('secret and user placeholders', () => {
  it('resolves secrets and user fields inside larger values', () => {
    const r = resolve({ Authorization: 'Bearer ${secret:TOKEN}', 'X-User': '${user:id}/${user:email}', PLAIN: 'x' }, new Map([['TOKEN', 's3cr3t']]), alice);
    assert.deepEqual(r, { values: { Authorization: 'Bearer s3cr3t', 'X-User': 'u1/alice@example.com', PLAIN: 'x' }, missingSecrets: [], missingUser: [] });
  });

  it('reports what is missing, each name once', () => {
    const r = resolve({ A: '${secret:A}${secret:A}', B: '${secret:B}', E: '${user:email}' }, new Map(), { owner: null, userId: null, email: null });
    assert.deepEqual(r.missingSecrets, ['A', 'B']);
    assert.deepEqual(r.missingUser, ['email']);
  });

  it('finds names, detects placeholders and blanks them', () => {
    assert.deepEqual(secretNames([{ a: '${secret:X} ${secret:Y}' }, { b: '${secret:X}' }]), ['X', 'Y']);
    assert.equal(hasPlaceholders([{ a: 'plain' }]), false);
    assert.equal(hasPlaceholders([{ a: 'plain' }, { b: '${user:id}' }]), true);
    assert.deepEqual(blank({ a: 'Bearer ${secret:T}', b: 'keep' }), { a: 'Bearer ', b: 'keep' });
  });

  it('names malformed placeholders', () => {
    assert.deepEqual(placeholderProblems('${secret:has space} ${user:name} ${secret:OK}'), [
      '${secret:has space}: expected a secret name [A-Za-z_][A-Za-z0-9_]{0,127}',
      '${user:name}: expected ${user:id} or ${user:email}',
    ]);
  });

  it('fingerprints resolved values independent of key order, and distinguishes values', () => {
    assert.equal(fingerprint([{ a: '1', b: '2' }]), fingerprint([{ b: '2', a: '1' }]));
    assert.notEqual(fingerprint([{ a: '1' }]), fingerprint([{ a: '2' }]));
    assert.notEqual(fingerprint([{ a: '1', b: '' }]), fingerprint([{ a: '1b' }]));
  });
});
