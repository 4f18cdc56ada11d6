import { z } from 'zod';

/**
 * Field builders for the environment schema. Every variable arrives as a string (or not at
 * all); each builder turns it into a typed value or reports one line that names what would
 * be accepted and echoes what was given, e.g. `expected an integer 1-65535, got "abc"`.
 *
 * An empty value (`PORT=`) counts as unset, so a blank line in `.env` falls back to the
 * default instead of failing in a confusing way.
 */

type Parse<T> = (raw: string) => { ok: true; value: T } | { ok: false; expected: string };

const show = (raw: string): string => JSON.stringify(raw.length > 80 ? `${raw.slice(0, 77)}...` : raw);

/** What a parser accepts, read off the message it gives for an impossible value. */
function describe<T>(parse: Parse<T>): string {
  const probe = parse('\u0000');
  return probe.ok ? 'a value' : probe.expected;
}

/** `sensitive`: never echo the value (secrets, keys); say only how long it was. */
function field<T>(parse: Parse<T>, sensitive = false) {
  /** Parses a present value, or reports one issue and returns z.NEVER. */
  const check = (value: string, ctx: z.RefinementCtx): T => {
    const result = parse(value);
    if (result.ok) return result.value;
    const got = sensitive ? `a value of ${value.length} characters (not shown)` : show(value);
    ctx.addIssue({ code: 'custom', message: `expected ${result.expected}, got ${got}` });
    return z.NEVER;
  };
  const input = () => z.string().optional();
  return {
    /** Required: missing or empty is an error naming what would be accepted. */
    required: () =>
      input().transform((raw, ctx): T => {
        const value = raw?.trim() ?? '';
        if (value !== '') return check(value, ctx);
        ctx.addIssue({ code: 'custom', message: `required: ${describe(parse)}, got nothing` });
        return z.NEVER;
      }),
    /** Optional with a default used when the variable is missing or empty. */
    default: (fallback: T) =>
      input().transform((raw, ctx): T => {
        const value = raw?.trim() ?? '';
        return value === '' ? fallback : check(value, ctx);
      }),
    /** Optional without a default: `undefined` when missing or empty. */
    optional: () =>
      input().transform((raw, ctx): T | undefined => {
        const value = raw?.trim() ?? '';
        return value === '' ? undefined : check(value, ctx);
      }),
  };
}

export const envInt = (min: number, max: number) =>
  field<number>((raw) => {
    const expected = `an integer ${min}-${max}`;
    if (!/^-?\d+$/.test(raw)) return { ok: false, expected };
    const n = Number(raw);
    return Number.isSafeInteger(n) && n >= min && n <= max ? { ok: true, value: n } : { ok: false, expected };
  });

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off']);

export const envBool = () =>
  field<boolean>((raw) => {
    const v = raw.toLowerCase();
    if (TRUE.has(v)) return { ok: true, value: true };
    if (FALSE.has(v)) return { ok: true, value: false };
    return { ok: false, expected: 'true or false' };
  });

export const envEnum = <const T extends string>(values: readonly T[]) =>
  field<T>((raw) =>
    (values as readonly string[]).includes(raw)
      ? { ok: true, value: raw as T }
      : { ok: false, expected: `one of ${values.join(', ')}` },
  );

/** A URL whose scheme is one of `protocols` (without the colon). Trailing slashes are kept. */
export const envUrl = (protocols: readonly string[]) =>
  field<URL>((raw) => {
    const expected = `a ${protocols.join(' or ')} URL`;
    try {
      const url = new URL(raw);
      return protocols.includes(url.protocol.replace(/:$/, '')) ? { ok: true, value: url } : { ok: false, expected };
    } catch {
      return { ok: false, expected };
    }
  });

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };

/** A byte size: `1048576`, `512kb`, `10mb`, `1gb` (binary multiples, as the seeds use). */
export const envSize = (min: number, max: number) =>
  field<number>((raw) => {
    const expected = `a size such as 512kb, 10mb or a byte count (${min}-${max} bytes)`;
    const m = /^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)?$/i.exec(raw);
    if (!m) return { ok: false, expected };
    const bytes = Math.floor(Number(m[1]) * SIZE_UNITS[(m[2] ?? 'b').toLowerCase()]);
    return bytes >= min && bytes <= max ? { ok: true, value: bytes } : { ok: false, expected };
  });

/** A comma-separated list of non-empty items, each checked by `item` (default: any). */
export const envList = (describe = 'a comma-separated list', item: (s: string) => boolean = () => true) =>
  field<string[]>((raw) => {
    const items = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    return items.every(item) ? { ok: true, value: items } : { ok: false, expected: describe };
  });

export const envString = (describe: string, test: (s: string) => boolean = () => true) =>
  field<string>((raw) => (test(raw) ? { ok: true, value: raw } : { ok: false, expected: describe }));

/** A secret (signing key, pepper): at least `minLength` characters; never echoed in errors. */
export const envSecret = (minLength: number) =>
  field<string>((raw) => (raw.length >= minLength ? { ok: true, value: raw } : { ok: false, expected: `at least ${minLength} characters` }), true);

/** A comma-separated list of secrets (API keys); errors never echo them. */
export const envSecretList = (minLength: number) =>
  field<string[]>((raw) => {
    const items = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    return items.every((s) => s.length >= minLength)
      ? { ok: true, value: items }
      : { ok: false, expected: `a comma-separated list of keys of at least ${minLength} characters each` };
  }, true);

/**
 * A value with its own parser (e.g. JSON checked by a zod schema): `parse` returns the value or
 * what would be accepted. `sensitive`: errors never echo the value.
 */
export const envCustom = <T>(parse: (raw: string) => { ok: true; value: T } | { ok: false; message: string }, sensitive = false) =>
  field<T>((raw) => {
    const result = parse(raw);
    return result.ok ? result : { ok: false, expected: result.message };
  }, sensitive);
