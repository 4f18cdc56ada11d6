/**
 * The nesting depth limit for JSON request bodies, checked on the raw bytes before parsing.
 *
 * Deeply nested JSON is cheap to send and expensive to hold: every recursive consumer (schema
 * validation, error rendering, `JSON.stringify` for a `jsonb` column, log serializers) can
 * overflow the stack on a document a few thousand levels deep. Rather than make each of them
 * iterative, bodies nested deeper than `HTTP_MAX_JSON_DEPTH` (default 64) are refused at the
 * edge with `400 json_too_deep`.
 */

const OPEN_OBJECT = 0x7b; // {
const OPEN_ARRAY = 0x5b; // [
const CLOSE_OBJECT = 0x7d; // }
const CLOSE_ARRAY = 0x5d; // ]
const QUOTE = 0x22; // "
const BACKSLASH = 0x5c; // \

/**
 * Whether the JSON text `body` (UTF-8 bytes or a string) opens more than `maxDepth` nested
 * objects/arrays at some point. One pass, no allocation; brackets inside strings (including
 * escaped quotes) do not count. Malformed text is not judged here (the parser reports it); the
 * answer for it is only about the brackets seen. `maxDepth` counts containers: `{}` is 1,
 * `{"a":[1]}` is 2.
 */
export function jsonDepthExceeds(body: Buffer | string, maxDepth: number): boolean {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (++depth > maxDepth) return true;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) depth--;
  }
  return false;
}
