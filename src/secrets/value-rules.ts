/**
 * Where a configured or resolved value goes, and what that place cannot hold:
 * - `env`: a process environment variable — no NUL (U+0000): the C environment is
 *   NUL-terminated, and Node refuses it (ERR_INVALID_ARG_VALUE);
 * - `header`: an HTTP header value — no CR, LF or NUL, no other control character than tab,
 *   nothing beyond U+00FF (RFC 9110 §5.5: field-value = VCHAR / obs-text / SP / HTAB; fetch
 *   sends a header value as bytes, one per character);
 * - `argument`: a tool argument (`inject`) — any string once resolved; a configured literal
 *   is stored as JSON in PostgreSQL, whose `jsonb` cannot hold NUL, so literals refuse NUL.
 */
export type ValuePlace = 'env' | 'header' | 'argument';

const PLACE_WORDS: Record<ValuePlace, string> = {
  env: 'an environment variable',
  header: 'an HTTP header value',
  argument: 'a stored tool argument',
};

/**
 * The character class a value breaks for `place`, as words (`a NUL character (U+0000)`), or
 * undefined when it fits. Never quotes the value. `literal`: a value stored in the
 * configuration (for `argument`, NUL then matters).
 */
export function forbiddenCharacter(value: string, place: ValuePlace, literal = false): string | undefined {
  if (place === 'argument') return literal && value.includes('\u0000') ? 'a NUL character (U+0000)' : undefined;
  if (value.includes('\u0000')) return 'a NUL character (U+0000)';
  if (place === 'env') return undefined;
  if (/[\r\n]/.test(value)) return 'a line break (CR or LF)';
  // eslint-disable-next-line no-control-regex
  if (/[\u0001-\u0008\u000b-\u001f\u007f]/.test(value)) return 'a control character (U+0001–U+001F or U+007F, other than tab)';
  if ([...value].some((c) => c.codePointAt(0)! > 0xff)) return 'a character beyond U+00FF';
  return undefined;
}

/** `contains a NUL character (U+0000), which an environment variable cannot hold`, or undefined. */
export function valueProblem(value: string, place: ValuePlace, literal = false): string | undefined {
  const found = forbiddenCharacter(value, place, literal);
  return found && `contains ${found}, which ${PLACE_WORDS[place]} cannot hold`;
}
