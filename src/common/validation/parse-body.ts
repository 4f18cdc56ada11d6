import type { z } from 'zod';
import { AppError } from '../errors/app-error.js';
import { ErrorCode } from '../errors/error-code.js';

/** Fields named in one validation error at most (a body with thousands of bad items gets a bounded answer). */
export const MAX_REPORTED_FIELDS = 20;
/** Longest field path shown (keys are client-chosen). */
const MAX_FIELD_CHARS = 200;

/**
 * Validates a request body (or query) against a zod schema. On failure: 400
 * `validation_failed` whose message names each bad field and what is accepted, e.g.
 * `name: expected a slug [a-z0-9][a-z0-9-]{0,62}, got "Bad Name"`, with the same list in
 * `details.fields` — at most {@link MAX_REPORTED_FIELDS} of them (the message then ends with
 * `; and N more`), field paths cut at 200 characters.
 */
export function parseBody<S extends z.ZodType>(schema: S, body: unknown): z.output<S> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const all = result.error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ field: fieldName([...issue.path, key]), message: 'is not a known field' }))
      : [{ field: fieldName(issue.path) || '(body)', message: issue.message }],
  );
  const fields = all.slice(0, MAX_REPORTED_FIELDS);
  const more = all.length - fields.length;
  throw new AppError(ErrorCode.ValidationFailed, fields.map((f) => `${f.field}: ${f.message}`).join('; ') + (more > 0 ? `; and ${more} more` : ''), {
    details: { fields, ...(more > 0 ? { more } : {}) },
  });
}

function fieldName(path: readonly PropertyKey[]): string {
  const name = path.map(String).join('.');
  return name.length > MAX_FIELD_CHARS ? `${name.slice(0, MAX_FIELD_CHARS)}…` : name;
}
