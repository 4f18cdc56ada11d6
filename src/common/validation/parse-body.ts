import type { z } from 'zod';
import { AppError } from '../errors/app-error.js';
import { ErrorCode } from '../errors/error-code.js';

/**
 * Validates a request body (or query) against a zod schema. On failure: 400
 * `validation_failed` whose message names each bad field and what is accepted, e.g.
 * `name: expected a slug [a-z0-9][a-z0-9-]{0,62}, got "Bad Name"`, with the same list in
 * `details.fields`.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const fields = result.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ field: [...issue.path, key].join('.'), message: 'is not a known field' }))
      : [{ field: issue.path.join('.') || '(body)', message: issue.message }],
  );
  throw new AppError(ErrorCode.ValidationFailed, fields.map((f) => `${f.field}: ${f.message}`).join('; '), {
    details: { fields },
  });
}
