import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';
import { SECRET_NAME } from './placeholders.js';

/** Largest secret value accepted (a PEM bundle or a service-account JSON fits). */
export const MAX_SECRET_BYTES = 64 * 1024;

/** `PUT …/secrets/…` body. */
export const putSecretSchema = z
  .object({
    // NUL cannot go into an environment variable or a header, and an unpaired surrogate has no
    // UTF-8 encoding (it would be stored as U+FFFD): both refused.
    value: pgSafe(
      z
        .string({ error: 'expected a string (the secret value)' })
        .min(1, { error: 'expected a non-empty string' })
        .refine((v) => Buffer.byteLength(v, 'utf8') <= MAX_SECRET_BYTES, { error: `expected at most ${MAX_SECRET_BYTES} bytes (64 KiB)` }),
    ),
  })
  .strict();

/** A secret name in a path: reported as the `name` field. */
export const secretNameSchema = z.object({
  name: z.string().regex(SECRET_NAME, { error: (i) => `expected a name matching [A-Za-z_][A-Za-z0-9_]{0,127}, got ${describeValue(i.input)}` }),
});
