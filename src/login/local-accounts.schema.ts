import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';

const show = (v: unknown) => describeValue(v);

/** Usernames: lower-case letters, digits and `._@-`, 1-100 characters (an email address fits). */
export const USERNAME = /^[a-z0-9][a-z0-9._@-]{0,99}$/;
export const MIN_PASSWORD = 12;
/** Longer passwords are refused: scrypt's cost grows with the input (bytes). */
export const MAX_PASSWORD = 1024;

const username = z
  .string({ error: (i) => `expected a username such as alice or alice@example.com (lower-case letters, digits and ._@-, 1-100 characters), got ${show(i.input)}` })
  .regex(USERNAME, { error: (i) => `expected lower-case letters, digits and ._@- (1-100 characters, starting with a letter or digit), got ${show(i.input)}` });
const password = z
  .string({ error: `expected a password of ${MIN_PASSWORD}-${MAX_PASSWORD} characters` })
  .min(MIN_PASSWORD, { error: `expected at least ${MIN_PASSWORD} characters` })
  .max(MAX_PASSWORD, { error: `expected at most ${MAX_PASSWORD} characters` });
const ROLE = /^[a-z][a-z0-9_-]{0,62}$/;

/** `POST /api/v1/local-accounts`: a person with a Gatehouse password. */
export const createLocalAccountSchema = z
  .object({
    username,
    password,
    email: z.email({ error: (i) => `expected an email address, got ${show(i.input)}` }).max(320).optional(),
    displayName: pgSafe(z.string({ error: 'expected text of 1-200 characters' }).min(1, { error: 'expected text of 1-200 characters' }).max(200, { error: 'expected text of 1-200 characters' })).optional(),
    roles: z
      .array(z.string().regex(ROLE, { error: (i) => `expected role names such as admin or member, got ${show(i.input)}` }), { error: 'expected an array of role names, e.g. ["member"]' })
      .max(50)
      .optional(),
  })
  .strict();

/** `PUT /api/v1/users/:id/password`: set or replace a user's Gatehouse password. */
export const setPasswordSchema = z.object({ password, username: username.optional() }).strict();
