import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';
import { POLICY_OPERATIONS } from './policy-evaluator.js';

const show = (v: unknown) => describeValue(v);
const TARGET = /^[A-Za-z0-9_.*?/:@%+=&~#-]{1,500}$/;
const SUBJECT_KEYS = ['role', 'userId', 'apiKeyId', 'group'] as const;

const subject = z
  .record(z.string(), pgSafe(z.string().min(1, { error: 'expected a non-empty string' }).max(200)), {
    error: 'expected exactly one of { role }, { userId }, { apiKeyId }, { group }',
  })
  .superRefine((value, ctx) => {
    const keys = Object.keys(value);
    if (keys.length !== 1 || !(SUBJECT_KEYS as readonly string[]).includes(keys[0])) {
      ctx.addIssue({ code: 'custom', message: `expected exactly one of { role }, { userId }, { apiKeyId }, { group }, got ${show(value)}` });
    }
  });
const effect = z.enum(['allow', 'deny'], { error: (i) => `expected allow or deny, got ${show(i.input)}` });
const operations = z
  .array(z.enum(POLICY_OPERATIONS, { error: (i) => `expected one of ${POLICY_OPERATIONS.join(', ')}, got ${show(i.input)}` }), {
    error: 'expected an array of operations',
  })
  .min(1, { error: `expected at least one of ${POLICY_OPERATIONS.join(', ')}` })
  .max(4);
const targets = z
  .array(z.string().regex(TARGET, { error: (i) => `expected a name glob such as github__* or *, got ${show(i.input)}` }), {
    error: 'expected an array of name globs',
  })
  .min(1, { error: 'expected at least one target glob (use * for everything)' })
  .max(200);
const description = pgSafe(z.string({ error: 'expected a string' }).max(2000, { error: 'expected at most 2000 characters' })).nullable();

/** `POST /api/v1/policies`. */
export const createPolicySchema = z.object({ subject, effect, operations, targets, description: description.optional() }).strict();
/** `PATCH /api/v1/policies/:id`. */
export const patchPolicySchema = z.object({ subject, effect, operations, targets, description }).partial().strict();
