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
};

function requireTransportFields(server: { transport: string; command?: string | null; url?: string | null }, ctx: z.RefinementCtx) {
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
  })
  .partial()
  .strict();

export const validateMerged = z
  .object({ transport: fields.transport, command: z.string().nullable().optional(), url: z.string().nullable().optional() })
  .superRefine(requireTransportFields);

export type CreateServerInput = z.output<typeof createServerSchema>;
