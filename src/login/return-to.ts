/**
 * Where a browser goes after signing in: a same-origin path only (OWASP Unvalidated Redirects
 * and Forwards Cheat Sheet: allow-list the destination). Anything else — an absolute URL, a
 * scheme-relative `//evil.example`, a backslash that browsers read as a slash (`/\evil`),
 * control characters, or over 2048 characters — is refused and replaced by the default.
 */

/** Where a browser lands when it gives no (or no acceptable) return path: the signed-in page. */
export const DEFAULT_RETURN_TO = '/login';
const MAX_LENGTH = 2048;

/**
 * `value` when it is a safe same-origin path (`/interaction/abc?x=1`), otherwise `undefined`.
 * Checked both when a flow starts and again when it ends (the stored value is re-validated).
 */
export function safeReturnTo(value: unknown): string | undefined {
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_LENGTH) return undefined;
  if (!value.startsWith('/') || value.startsWith('//')) return undefined;
  // Browsers treat "\" as "/" in special URLs, and strip tabs/newlines before parsing.
  if (value.includes('\\') || [...value].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f)) return undefined;
  const base = 'http://gatehouse.invalid';
  let parsed: URL;
  try {
    parsed = new URL(value, base);
  } catch {
    return undefined;
  }
  if (parsed.origin !== base) return undefined;
  return parsed.pathname + parsed.search + parsed.hash;
}
