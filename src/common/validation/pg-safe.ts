import { z } from 'zod';

/**
 * Text PostgreSQL cannot store: `text` refuses U+0000 (NUL), and `jsonb` refuses both NUL
 * (`\u0000`) and unpaired UTF-16 surrogates (U+D800–U+DFFF without their other half, which no
 * UTF-8 encoding has). A JavaScript string from `JSON.parse` can hold either, so anything
 * that reaches a `text` or `jsonb` column from a client must be checked (admin bodies:
 * refused with 400) or cleaned ({@link toPgSafe}: informational values such as MCP
 * `clientInfo` and identity-token claims).
 */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
// eslint-disable-next-line no-control-regex -- NUL is exactly what this finds
const UNSAFE_GLOBAL = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** U+FFFD, the Unicode replacement character: what {@link toPgSafe} puts in place of each unsafe code unit. */
export const REPLACEMENT_CHARACTER = '\uFFFD';

/**
 * What makes `s` unstorable in PostgreSQL, as a message naming the character class, or
 * undefined when it is fine: `contains a NUL character (U+0000), which is not allowed` or
 * `contains an unpaired UTF-16 surrogate (invalid Unicode), which is not allowed`.
 */
export function pgUnsafeReason(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character (U+0000), which is not allowed';
  if (LONE_SURROGATE.test(s)) return 'contains an unpaired UTF-16 surrogate (invalid Unicode), which is not allowed';
  return undefined;
}

/** Whether `s` can be stored in a PostgreSQL `text` or `jsonb` value as it is. */
export const isPgSafe = (s: string): boolean => pgUnsafeReason(s) === undefined;

/** `s` with every NUL and unpaired surrogate replaced by U+FFFD (same length in UTF-16 code units). */
export function toPgSafe(s: string): string {
  return isPgSafe(s) ? s : s.replace(UNSAFE_GLOBAL, REPLACEMENT_CHARACTER);
}

/**
 * The zod refinement every admin schema puts on its free-text strings: a string holding NUL
 * or an unpaired surrogate fails with the issue message of {@link pgUnsafeReason}, at the
 * field's path (so `parseBody` answers `400 validation_failed` naming the field and the
 * character class). Usage: `pgSafe(z.string().max(200))`.
 */
export function pgSafe<T extends z.ZodType<string>>(schema: T): T {
  return schema.superRefine((value, ctx) => {
    const reason = pgUnsafeReason(value);
    if (reason) ctx.addIssue({ code: 'custom', message: reason });
  });
}

/** A free-text string that PostgreSQL can store (see {@link pgSafe}), with zod's `error` option. */
export const pgSafeString = (params?: Parameters<typeof z.string>[0]) => pgSafe(z.string(params));
