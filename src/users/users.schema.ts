import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';

const show = (v: unknown) => describeValue(v);
const ROLE = /^[a-z][a-z0-9_-]{0,62}$/;

const roles = z
  .array(z.string().regex(ROLE, { error: (i) => `expected role names such as admin or member ([a-z][a-z0-9_-]{0,62}), got ${show(i.input)}` }), {
    error: 'expected an array of role names, e.g. ["member"]',
  })
  .max(50);

/** `PATCH /api/v1/users/:id`. */
export const patchUserSchema = z
  .object({
    roles,
    disabled: z.boolean({ error: (i) => `expected true or false, got ${show(i.input)}` }),
  })
  .partial()
  .strict();

/** `GET /api/v1/users` query. */
export const listUsersQuery = z
  .object({
    limit: z.coerce.number({ error: 'expected an integer 1-500' }).int({ error: 'expected an integer 1-500' }).min(1).max(500).default(100),
    offset: z.coerce.number({ error: 'expected an integer ≥ 0' }).int({ error: 'expected an integer ≥ 0' }).min(0).default(0),
  })
  .strict();
