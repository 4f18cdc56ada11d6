import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { blank, fingerprint, hasPlaceholders, placeholderProblems, resolve, secretNames } from './placeholders.js';

const alice = { owner: 'u1', userId: 'u1', email: 'alice@example.com' };

describe('secret and user placeholders', () => {
  it('resolves secrets and user fields inside larger values', () => {
    const r = resolve({ Authorization: 'Bearer ${secret:TOKEN}', 'X-User': '${user:id}/${user:email}', PLAIN: 'x' }, new Map([['TOKEN', 's3cr3t']]), alice);
    assert.deepEqual(r, { values: { Authorization: 'Bearer s3cr3t', 'X-User': 'u1/alice@example.com', PLAIN: 'x' }, missingSecrets: [], missingUser: [], invalid: [], secretValues: ['s3cr3t'] });
  });

  it('reports values their place cannot hold by key and secret or user field, never by value', () => {
    const secrets = new Map([
      ['NUL', 'a\u0000b'],
      ['CRLF', 'x\r\ny'],
      ['OK', 'fine'],
    ]);
    const caller = { owner: 'u1', userId: 'u1', email: 'eve@example.com\r\nX-Admin: 1' };
    const env = resolve({ A: '${secret:NUL}', B: '${secret:CRLF}', C: '${secret:OK}' }, secrets, caller, 'env');
    assert.deepEqual(env.invalid, [{ key: 'A', secret: 'NUL', problem: 'contains a NUL character (U+0000), which an environment variable cannot hold' }]);
    const headers = resolve({ Authorization: 'Bearer ${secret:CRLF}', 'X-Email': '${user:email}', 'X-Ok': '${secret:OK}' }, secrets, caller, 'header');
    assert.deepEqual(
      headers.invalid.map((i) => [i.key, i.secret ?? i.user, i.problem]),
      [
        ['Authorization', 'CRLF', 'contains a line break (CR or LF), which an HTTP header value cannot hold'],
        ['X-Email', 'email', 'contains a line break (CR or LF), which an HTTP header value cannot hold'],
      ],
    );
    assert.ok(!JSON.stringify([env.invalid, headers.invalid]).includes('x\\r\\ny'));
    assert.deepEqual(resolve({ message: '${secret:NUL}' }, secrets, caller, 'argument').invalid, [], 'a tool argument may hold any string');
    assert.deepEqual(resolve({ A: '${secret:NUL}' }, secrets, caller).invalid, [], 'no place: no check');
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
