import assert from 'node:assert/strict';
import { inspect } from 'node:util';
import { describe, it } from 'node:test';
import { encodingsOf, ValueMasker } from './value-masker.js';

describe('ValueMasker', () => {
  const odd = 'q"\\\u0000é\r\n€-7f3a';

  it('masks a value in every encoding: raw, JSON-escaped, inspect-escaped, URL-encoded, base64', () => {
    const m = new ValueMasker([{ value: odd, secret: true }]);
    const forms = [odd, JSON.stringify(odd), inspect(odd), encodeURIComponent(odd), new URLSearchParams({ v: odd }).toString(), Buffer.from(odd).toString('base64')];
    for (const form of forms) {
      const masked = m.mask(`before ${form} after`);
      assert.ok(masked.includes('[REDACTED]') && !masked.includes('7f3a'), `${form} → ${masked}`);
    }
  });

  it('masks secrets at any length, literals only from 8 characters, and each line of a multi-line value', () => {
    const m = new ValueMasker([
      { value: 'k9', secret: true },
      { value: 'info', secret: false },
      { value: 'literal-long-1', secret: false },
      { value: '-----BEGIN KEY-----\nMIIBvTCCAWWgAwIBAgIJ\n-----END KEY-----', secret: true },
    ]);
    assert.equal(m.mask('level=info k9 literal-long-1'), 'level=info [REDACTED] [REDACTED]');
    assert.equal(m.mask('read MIIBvTCCAWWgAwIBAgIJ from stdin'), 'read [REDACTED] from stdin');
  });

  it('covers a Basic credential decoded, and its password', () => {
    const header = `Basic ${Buffer.from('ada:pa55-w0rd!').toString('base64')}`;
    assert.ok(encodingsOf(header).includes('pa55-w0rd!'));
    const m = new ValueMasker([{ value: header, secret: false }]);
    assert.equal(m.mask('login ada:pa55-w0rd! failed'), 'login [REDACTED] failed');
  });

  it('is a no-op without values and survives regex metacharacters', () => {
    assert.equal(new ValueMasker().mask('a.b*c'), 'a.b*c');
    assert.equal(new ValueMasker([{ value: 'a.b*c(d)[e]', secret: true }]).mask('x a.b*c(d)[e] y axb'), 'x [REDACTED] y axb');
  });
});
