import { z } from 'zod';
import { PERMISSIONS, ROLES } from '../auth/principal.js';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';

const show = (v: unknown) => describeValue(v);

/** `POST /api/v1/api-keys`. */
export const createApiKeySchema = z
  .object({
    name: pgSafe(
      z
        .string({ error: 'expected a string such as "ci-bot"' })
        .trim()
        .min(1, { error: 'expected a non-empty name such as "ci-bot"' })
        .max(100, { error: 'expected at most 100 characters' }),
    ),
    role: z.enum(ROLES, { error: (i) => `expected ${ROLES.join(' or ')}, got ${show(i.input)}` }).default('member'),
    scopes: z
      .array(z.enum(PERMISSIONS, { error: (i) => `expected one of ${PERMISSIONS.join(', ')}, got ${show(i.input)}` }), {
        error: `expected an array of scopes from ${PERMISSIONS.join(', ')}`,
      })
      .min(1, { error: `expected at least one of ${PERMISSIONS.join(', ')}` })
      .optional(),
    expiresAt: z.iso
      .datetime({ offset: true, error: (i) => `expected an ISO 8601 date-time such as 2027-01-31T00:00:00Z, or null, got ${show(i.input)}` })
      .nullable()
      .optional()
      .refine((v) => v == null || Date.parse(v) > Date.now(), { error: 'expected a date-time in the future' }),
  })
  .strict();
