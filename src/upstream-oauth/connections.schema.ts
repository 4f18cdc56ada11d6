import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';

/**
 * A token or client secret: what an `Authorization` header or a form field can carry —
 * printable ASCII without spaces (RFC 6750 §2.1 `b64token` is a subset), at most 16 KiB.
 * Errors never echo the value.
 */
const credential = (what: string) =>
  z
    .string({ error: `expected ${what} (a string)` })
    .min(1, { error: `expected a non-empty ${what}` })
    .max(16_384, { error: `expected ${what} of at most 16384 characters` })
    .regex(/^[\x21-\x7E]+$/, { error: `expected ${what} of printable ASCII characters without spaces (the value is not shown)` });

const httpUrl = (what: string) =>
  pgSafe(z.string({ error: (i) => `expected ${what} (an https URL), got ${describeValue(i.input)}` })).refine(
    (v) => {
      try {
        const u = new URL(v);
        return (u.protocol === 'https:' || u.protocol === 'http:') && !u.username && !u.password && !u.hash;
      } catch {
        return false;
      }
    },
    { error: (i) => `expected ${what} (an https URL without credentials or fragment), got ${describeValue(i.input)}` },
  );

const scopeToken = /^[\x21\x23-\x5B\x5D-\x7E]{1,200}$/;
const scopes = z
  .union([z.array(z.string()), z.string()], { error: 'expected an array of scope strings or a space-separated string' })
  .transform((v) => (Array.isArray(v) ? v : v.split(' ').filter(Boolean)))
  .refine((list) => list.length <= 100 && list.every((s) => scopeToken.test(s)), {
    error: 'expected at most 100 scope tokens (printable ASCII without spaces, quotes or backslashes)',
  });

/**
 * `PUT /api/v1/me/connections/:server` and `PUT /api/v1/servers/:name/connection`: tokens
 * obtained elsewhere (seed mcp-api), and what refreshing and revoking them needs.
 */
export const putConnectionSchema = z
  .object({
    accessToken: credential('an access token'),
    refreshToken: credential('a refresh token').optional(),
    /** Seconds from now (RFC 6749 §5.1 `expires_in`). */
    expiresIn: z
      .number({ error: (i) => `expected a number of seconds, got ${describeValue(i.input)}` })
      .int({ error: 'expected a whole number of seconds' })
      .min(1, { error: 'expected 1 second or more' })
      .max(10 * 365 * 86_400, { error: 'expected at most ten years in seconds' })
      .optional(),
    expiresAt: z.iso.datetime({ offset: true, error: (i) => `expected an ISO 8601 date-time such as 2030-01-01T00:00:00Z, got ${describeValue(i.input)}` }).optional(),
    scopes: scopes.optional(),
    account: pgSafe(z.string({ error: 'expected a string' }).max(320, { error: 'expected at most 320 characters' })).optional(),
    issuer: httpUrl('an issuer').optional(),
    tokenEndpoint: httpUrl('a token endpoint URL').optional(),
    revocationEndpoint: httpUrl('a revocation endpoint URL').optional(),
    clientId: pgSafe(z.string({ error: 'expected a client id string' }).min(1).max(512, { error: 'expected at most 512 characters' })).optional(),
    clientSecret: credential('a client secret').optional(),
    authMethod: z
      .enum(['client_secret_basic', 'client_secret_post', 'none'], { error: (i) => `expected client_secret_basic, client_secret_post or none, got ${describeValue(i.input)}` })
      .optional(),
    resource: httpUrl('a resource URL').optional(),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.expiresIn !== undefined && b.expiresAt !== undefined) ctx.addIssue({ code: 'custom', path: ['expiresAt'], message: 'give expiresIn or expiresAt, not both' });
    if (b.refreshToken && !b.tokenEndpoint) ctx.addIssue({ code: 'custom', path: ['tokenEndpoint'], message: 'required with refreshToken (where Gatehouse refreshes it)' });
    if (b.refreshToken && !b.clientId) ctx.addIssue({ code: 'custom', path: ['clientId'], message: 'required with refreshToken (the client the token was issued to)' });
    if (b.revocationEndpoint && !b.clientId) ctx.addIssue({ code: 'custom', path: ['clientId'], message: 'required with revocationEndpoint' });
    if (b.clientSecret && !b.clientId) ctx.addIssue({ code: 'custom', path: ['clientSecret'], message: 'needs clientId' });
  });

export type PutConnectionInput = z.output<typeof putConnectionSchema>;
