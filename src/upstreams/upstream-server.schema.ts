import { z } from 'zod';
import { describeValue } from '../common/validation/describe-value.js';
import { pgSafe } from '../common/validation/pg-safe.js';
import { placeholderProblems } from '../secrets/placeholders.js';
import { valueProblem, type ValuePlace } from '../secrets/value-rules.js';

/** `[a-z0-9][a-z0-9-]{0,62}`: safe in URLs (`/mcp/<name>`) and as a tool-name prefix. */
export const SERVER_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ARGUMENT_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,127}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
/** Headers Gatehouse owns on upstream requests; a server config may not set them. */
const RESERVED_HEADERS = new Set(['host', 'content-length', 'content-type', 'accept', 'connection', 'mcp-session-id', 'mcp-protocol-version', 'transfer-encoding']);
const GLOB = /^[A-Za-z0-9_.*?/:-]{1,200}$/;

const show = (v: unknown) => describeValue(v);

const name = z.string({ error: 'expected a slug [a-z0-9][a-z0-9-]{0,62}' }).refine((v) => SERVER_NAME.test(v), {
  error: (i) => `expected a slug [a-z0-9][a-z0-9-]{0,62}, got ${show(i.input)}`,
});
const transport = z.enum(['stdio', 'streamable_http', 'sse'], {
  error: (i) => `expected one of stdio, streamable_http, sse, got ${show(i.input)}`,
});
const text = (max: number, what = 'a string') =>
  pgSafe(z.string({ error: (i) => `expected ${what}, got ${show(i.input)}` }).max(max, { error: `expected at most ${max} characters` }));
const stringMap = (key: RegExp, what: string, place: ValuePlace, reserved?: Set<string>) =>
  z
    .record(z.string(), pgSafe(z.string({ error: 'expected a string value' }).max(8192, { error: 'expected at most 8192 characters' })), {
      error: (i) => `expected an object of ${what} to string values, got ${show(i.input)}`,
    })
    .superRefine((map, ctx) => {
      for (const [k, v] of Object.entries(map)) {
        if (!key.test(k)) ctx.addIssue({ code: 'custom', path: [k], message: `expected ${what}, got ${show(k)}` });
        else if (reserved?.has(k.toLowerCase())) ctx.addIssue({ code: 'custom', path: [k], message: `is set by Gatehouse and cannot be configured` });
        for (const problem of placeholderProblems(v)) ctx.addIssue({ code: 'custom', path: [k], message: problem });
        // What the value's place cannot hold (NUL in env, CR/LF in a header…): named, never quoted.
        const bad = valueProblem(v, place, true);
        if (bad) ctx.addIssue({ code: 'custom', path: [k], message: bad });
      }
    });
const url = pgSafe(z.string({ error: (i) => `expected an http or https URL, got ${show(i.input)}` }))
  .refine(
    (v) => {
      try {
        return ['http:', 'https:'].includes(new URL(v).protocol);
      } catch {
        return false;
      }
    },
    { error: (i) => `expected an http or https URL, got ${show(i.input)}` },
  );
/** An origin a redirect may lead to: `http(s)://host[:port]`, nothing else (no path, credentials, query). */
const origin = pgSafe(z.string({ error: (i) => `expected an origin such as https://mcp.example.com, got ${show(i.input)}` })).refine(
  (v) => {
    try {
      const u = new URL(v);
      return ['http:', 'https:'].includes(u.protocol) && u.pathname === '/' && !u.search && !u.hash && !u.username && !u.password && !/[?#]/.test(v);
    } catch {
      return false;
    }
  },
  { error: (i) => `expected an origin such as https://mcp.example.com (scheme, host and port only), got ${show(i.input)}` },
);
const redirectOrigins = z
  .array(origin, { error: 'expected an array of origins such as ["https://mcp.example.com"]' })
  .max(20, { error: 'expected at most 20 origins' })
  .transform((list) => [...new Set(list.map((v) => new URL(v).origin))]);
const globs = z.array(z.string().regex(GLOB, { error: (i) => `expected a tool-name glob (letters, digits, _.-/:, * and ?), got ${show(i.input)}` }), {
  error: 'expected an array of glob strings',
}).max(200);
const toolFilter = z
  .object({ allow: globs.default([]), deny: globs.default([]) }, { error: 'expected { allow: [globs], deny: [globs] }' })
  .strict();

const httpsOrLoopback = (what: string) =>
  pgSafe(z.string({ error: (i) => `expected ${what} (an https URL, or http on a loopback host), got ${show(i.input)}` })).refine(
    (v) => {
      try {
        const u = new URL(v);
        return !u.username && !u.password && !u.hash && (u.protocol === 'https:' || (u.protocol === 'http:' && /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(u.hostname)));
      } catch {
        return false;
      }
    },
    { error: (i) => `expected ${what} (an https URL without credentials, or http on a loopback host), got ${show(i.input)}` },
  );
/** An OAuth scope token (RFC 6749 §3.3: printable ASCII except space, `"` and `\`). */
const scopeToken = z.string({ error: 'expected a scope string' }).regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,200}$/, {
  error: (i) => `expected a scope token (printable ASCII without spaces, quotes or backslashes, at most 200 characters), got ${show(i.input)}`,
});
/**
 * `oauth`: how Gatehouse authorizes to an HTTP upstream that needs OAuth (issue 14). See
 * `UpstreamOAuthConfig` and docs/upstream-oauth.md. `clientSecret` is a literal or a
 * `${secret:NAME}` placeholder (a server shared secret).
 */
const oauth = z
  .object(
    {
      mode: z.enum(['user', 'token_exchange'], { error: (i) => `expected "user" or "token_exchange", got ${show(i.input)}` }),
      scopes: z.array(scopeToken, { error: 'expected an array of scope strings' }).max(50, { error: 'expected at most 50 scopes' }).optional(),
      clientId: text(512, 'a client id').min(1, { error: 'expected a non-empty client id' }).optional(),
      clientSecret: text(2048, 'a client secret or ${secret:NAME}')
        .min(1, { error: 'expected a non-empty client secret' })
        .superRefine((v, ctx) => {
          for (const problem of placeholderProblems(v)) ctx.addIssue({ code: 'custom', message: problem });
          if (/\$\{user:/.test(v)) ctx.addIssue({ code: 'custom', message: 'expected a literal or ${secret:NAME}; ${user:…} cannot be a client secret' });
        })
        .optional(),
      authorizationServer: httpsOrLoopback('an authorization server issuer').optional(),
      tokenExchange: z
        .object(
          {
            tokenEndpoint: httpsOrLoopback('a token endpoint URL'),
            audience: text(2048, 'an audience').min(1).optional(),
            resource: url.optional(),
            scope: text(2048, 'a space-separated scope list').optional(),
            subjectTokenType: text(200, 'a token type URI').min(1).optional(),
          },
          { error: 'expected { tokenEndpoint, audience?, resource?, scope?, subjectTokenType? }' },
        )
        .strict()
        .optional(),
    },
    { error: (i) => `expected { mode: "user" | "token_exchange", scopes?, clientId?, clientSecret?, authorizationServer?, tokenExchange? }, got ${show(i.input)}` },
  )
  .strict()
  .superRefine((o, ctx) => {
    if (o.mode === 'token_exchange' && !o.tokenExchange) ctx.addIssue({ code: 'custom', path: ['tokenExchange'], message: 'required when mode is token_exchange' });
    if (o.mode === 'user' && o.tokenExchange) ctx.addIssue({ code: 'custom', path: ['tokenExchange'], message: 'only for mode token_exchange' });
    if (o.clientSecret && !o.clientId) ctx.addIssue({ code: 'custom', path: ['clientSecret'], message: 'needs clientId' });
  })
  .nullable();

const fields = {
  name,
  transport,
  command: text(4096, 'a command').min(1, { error: 'expected a non-empty command' }).nullable(),
  args: z.array(text(8192), { error: 'expected an array of strings' }).max(256),
  env: stringMap(ENV_NAME, 'environment variable names', 'env'),
  cwd: text(4096, 'a directory path').nullable(),
  url: url.nullable(),
  headers: stringMap(HEADER_NAME, 'header names', 'header', RESERVED_HEADERS),
  enabled: z.boolean({ error: (i) => `expected true or false, got ${show(i.input)}` }),
  description: text(2000).nullable(),
  timeoutMs: z
    .number({ error: (i) => `expected an integer 100-3600000 (milliseconds), got ${show(i.input)}` })
    .int({ error: 'expected an integer 100-3600000 (milliseconds)' })
    .min(100, { error: 'expected an integer 100-3600000 (milliseconds)' })
    .max(3_600_000, { error: 'expected an integer 100-3600000 (milliseconds)' }),
  toolFilter,
  inject: stringMap(ARGUMENT_NAME, 'tool argument names', 'argument').refine((m) => Object.keys(m).length <= 50, { error: 'expected at most 50 arguments' }),
  redirectOrigins,
  maxMessageBytes: z
    .number({ error: (i) => `expected an integer 1024-1073741824 (bytes) or null, got ${show(i.input)}` })
    .int({ error: 'expected an integer 1024-1073741824 (bytes) or null' })
    .min(1024, { error: 'expected an integer 1024-1073741824 (bytes) or null' })
    .max(1024 ** 3, { error: 'expected an integer 1024-1073741824 (bytes) or null' })
    .nullable(),
  oauth,
};

function requireTransportFields(
  server: { transport: string; command?: string | null; url?: string | null; oauth?: unknown; headers?: Record<string, string> },
  ctx: z.RefinementCtx,
) {
  if (server.oauth && server.transport === 'stdio') ctx.addIssue({ code: 'custom', path: ['oauth'], message: 'only for HTTP transports (streamable_http, sse)' });
  if (server.oauth && server.headers && Object.keys(server.headers).some((k) => k.toLowerCase() === 'authorization')) {
    ctx.addIssue({ code: 'custom', path: ['headers', 'Authorization'], message: 'is set by Gatehouse from the OAuth connection when the server has oauth; remove it' });
  }
  if (server.transport === 'stdio' && !server.command) {
    ctx.addIssue({ code: 'custom', path: ['command'], message: 'required when transport is stdio' });
  }
  if (server.transport !== 'stdio' && !server.url) {
    ctx.addIssue({ code: 'custom', path: ['url'], message: `required when transport is ${server.transport}` });
  }
}

/** `POST /api/v1/servers` and each entry of GATEHOUSE_SERVERS_FILE. Unknown fields are rejected. */
export const createServerSchema = z
  .object({
    name: fields.name,
    transport: fields.transport,
    command: fields.command.optional(),
    args: fields.args.default([]),
    env: fields.env.default({}),
    cwd: fields.cwd.optional(),
    url: fields.url.optional(),
    headers: fields.headers.default({}),
    enabled: fields.enabled.default(true),
    description: fields.description.optional(),
    timeoutMs: fields.timeoutMs.default(60_000),
    toolFilter: toolFilter.default({ allow: [], deny: [] }),
    inject: fields.inject.default({}),
    redirectOrigins: fields.redirectOrigins.default([]),
    maxMessageBytes: fields.maxMessageBytes.default(null),
    oauth: fields.oauth.default(null),
  })
  .strict()
  .superRefine(requireTransportFields);

/** `PATCH /api/v1/servers/:name`: any subset except `name`; the result must still be valid. */
export const patchServerSchema = z
  .object({
    transport: fields.transport,
    command: fields.command,
    args: fields.args,
    env: fields.env,
    cwd: fields.cwd,
    url: fields.url,
    headers: fields.headers,
    enabled: fields.enabled,
    description: fields.description,
    timeoutMs: fields.timeoutMs,
    toolFilter,
    inject: fields.inject,
    redirectOrigins: fields.redirectOrigins,
    maxMessageBytes: fields.maxMessageBytes,
    oauth: fields.oauth,
  })
  .partial()
  .strict();

export const validateMerged = z
  .object({
    transport: fields.transport,
    command: z.string().nullable().optional(),
    url: z.string().nullable().optional(),
    oauth: z.unknown().optional(),
    headers: z.record(z.string(), z.string()).optional(),
  })
  .superRefine(requireTransportFields);

export type CreateServerInput = z.output<typeof createServerSchema>;
