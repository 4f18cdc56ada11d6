import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { safeReturnTo } from './return-to.js';

describe('safeReturnTo', () => {
  it('keeps same-origin paths', () => {
    assert.equal(safeReturnTo('/interaction/abc?x=1'), '/interaction/abc?x=1');
    assert.equal(safeReturnTo('/'), '/');
  });
  it('refuses everything that could leave the origin', () => {
    for (const bad of ['https://evil.example/', '//evil.example', '/\\evil.example', '\\\\evil', '/\t/evil.example', 'javascript:alert(1)', '', 'x', '/' + 'a'.repeat(3000), 42, undefined, ['/a']]) {
      assert.equal(safeReturnTo(bad), undefined, JSON.stringify(bad));
    }
  });
});
