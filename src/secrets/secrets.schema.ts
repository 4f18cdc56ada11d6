import { z } from 'zod';
import { SECRET_NAME } from './placeholders.js';

/** Largest secret value accepted (a PEM bundle or a service-account JSON fits). */
export const MAX_SECRET_BYTES = 64 * 1024;

/** `PUT …/secrets/…` body. */
export const putSecretSchema = z
  .object({
    value: z
      .string({ error: 'expected a string (the secret value)' })
      .min(1, { error: 'expected a non-empty string' })
      .refine((v) => Buffer.byteLength(v, 'utf8') <= MAX_SECRET_BYTES, { error: `expected at most ${MAX_SECRET_BYTES} bytes (64 KiB)` }),
  })
  .strict();

/** A secret name in a path: reported as the `name` field. */
export const secretNameSchema = z.object({
  name: z.string().regex(SECRET_NAME, { error: (i) => `expected a name matching [A-Za-z_][A-Za-z0-9_]{0,127}, got ${JSON.stringify(String(i.input)).slice(0, 80)}` }),
});
