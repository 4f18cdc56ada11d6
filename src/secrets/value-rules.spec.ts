import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forbiddenCharacter, valueProblem } from './value-rules.js';

describe('what a value may hold where it goes', () => {
  it('env: no NUL; anything else, line breaks and non-ASCII included', () => {
    assert.equal(forbiddenCharacter('a\u0000b', 'env'), 'a NUL character (U+0000)');
    assert.equal(forbiddenCharacter('-----BEGIN-----\nx\r\n€', 'env'), undefined);
  });

  it('header: no NUL, CR, LF, other controls or characters beyond U+00FF; tab and Latin-1 pass (RFC 9110 §5.5)', () => {
    assert.equal(forbiddenCharacter('a\u0000b', 'header'), 'a NUL character (U+0000)');
    assert.equal(forbiddenCharacter('a\r\nX-Evil: 1', 'header'), 'a line break (CR or LF)');
    assert.equal(forbiddenCharacter('a\u0007b', 'header'), 'a control character (U+0001–U+001F or U+007F, other than tab)');
    assert.equal(forbiddenCharacter('a€', 'header'), 'a character beyond U+00FF');
    assert.equal(forbiddenCharacter('Bearer a\tbé"\\', 'header'), undefined);
  });

  it('argument: resolved values may hold anything; stored literals no NUL; messages name the place, not the value', () => {
    assert.equal(forbiddenCharacter('a\u0000b', 'argument'), undefined);
    assert.equal(forbiddenCharacter('a\u0000b', 'argument', true), 'a NUL character (U+0000)');
    assert.equal(valueProblem('s3cr3t\n', 'header'), 'contains a line break (CR or LF), which an HTTP header value cannot hold');
  });
});
