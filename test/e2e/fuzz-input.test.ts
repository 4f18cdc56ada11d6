import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ACCEPT, ENVELOPE, LEGACY, MODERN, legacySession } from '../support/mcp-raw.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

/**
 * Generated bad input against `/mcp` (both eras) and every admin route of
 * test/snapshots/routes.txt: never a 5xx, never a hang (each request must answer within
 * REQUEST_MS), never an `unhandled error` log line, and every 4xx in the documented shape —
 * `{ "error": { "code", "message", "requestId" } }`, or a JSON-RPC error on `/mcp`.
 * Seeded: FUZZ_SEED overrides the default; a failure prints the seed and the shrunk input.
 */
const SEED = Number(process.env.FUZZ_SEED ?? 20261129);
const RUNS = Number(process.env.FUZZ_RUNS ?? 250);
const REQUEST_MS = 10_000;
const ADMIN_KEY = 'fuzz-admin-key-0123456789abcdef';

interface Route {
  method: string;
  path: string;
}
const ROUTES: Route[] = readFileSync('test/snapshots/routes.txt', 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => {
    const [method, path] = l.trim().split(/\s+/);
    return { method, path };
  })
  .filter((r) => !r.path.startsWith('/mcp'));

// ── generators ────────────────────────────────────────────────────────────
const nasty = fc.constantFrom('\u0000', '\uD800', '\uDBFF', '\uDC00', '\uDFFF', '\u202E', '\uFFFF', '"', '\\', '{', '[', '%00', '\r\n', '../', '*');
const badString = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.tuple(fc.string({ maxLength: 8 }), nasty, fc.string({ maxLength: 8 })).map(([a, b, c]) => a + b + c),
  fc.integer({ min: 1_000, max: 200_000 }).map((n) => 'x'.repeat(n)),
);
const leaf = fc.oneof(badString, fc.integer(), fc.double(), fc.boolean(), fc.constant(null));
const value: fc.Arbitrary<unknown> = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('v'), { maxLength: 4 }), fc.dictionary(badString, tie('v'), { maxKeys: 4 })),
})).v;
/** A JSON text nested `depth` levels (as text: JSON.stringify cannot build it). */
const deepText = fc.tuple(fc.integer({ min: 65, max: 5_000 }), fc.constantFrom('{"a":', '[')).map(([n, open]) => open.repeat(n) + '1' + (open === '[' ? ']' : '}').repeat(n));
const ADMIN_FIELDS = ['name', 'transport', 'command', 'args', 'env', 'cwd', 'url', 'headers', 'enabled', 'description', 'timeoutMs', 'toolFilter', 'inject', 'subject', 'effect', 'operations', 'targets', 'role', 'scopes', 'expiresAt', 'roles', 'disabled', 'value', '__proto__', 'constructor'];
/** A body: wrong types, known fields with bad values, unknown fields, deep or broken JSON. */
const body = fc.oneof(
  value.map((v) => JSON.stringify(v) ?? 'null'),
  fc.dictionary(fc.constantFrom(...ADMIN_FIELDS), value, { maxKeys: 6 }).map((o) => JSON.stringify(o)),
  fc.tuple(fc.constantFrom(...ADMIN_FIELDS), deepText).map(([k, d]) => `{"${k}":${d}}`),
  fc.constantFrom('', '{', '{"a":1,}', 'nul', '"\\ud800"', '{"name":"\\u0000"}', '{"__proto__":{"x":1}}', '[]', '1e999'),
);
const pathSegment = fc.oneof(
  fc.constantFrom('everything', 'nope', '00000000-0000-0000-0000-000000000000', 'TOKEN', 'x'.repeat(150)),
  badString.map((s) => [...Buffer.from(s.slice(0, 300), 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('')),
  fc.constantFrom('%00', '%ED%A0%80', '%E0%A4%A', '..', '%2e%2e'),
);
/** Header values fetch can send (no CR/LF/NUL). */
const headerValue = fc.oneof(fc.string({ unit: 'grapheme-ascii', maxLength: 40 }), fc.constantFrom('', ' ', 'null', '2025-06-18', MODERN, '9999-99-99', 'tools/call', '=?base64?', 'x'.repeat(2_000)));
const contentType = fc.constantFrom('application/json', 'application/json; charset=utf-8', 'text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=latin1', 'multipart/form-data; boundary=x', undefined);

const MCP_METHODS = ['initialize', 'tools/call', 'tools/list', 'prompts/get', 'resources/read', 'ping', 'notifications/initialized', 'notifications/cancelled', 'subscriptions/listen', 'server/discover', 'completion/complete', 'logging/setLevel', 'nope/nope'];
const rpcMessage = fc.record(
  {
    jsonrpc: fc.oneof(fc.constant('2.0'), value),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 10 }), fc.constant(null), value),
    method: fc.oneof(fc.constantFrom(...MCP_METHODS), badString),
    params: fc.oneof(
      fc.record(
        {
          name: fc.oneof(fc.constantFrom('everything__echo', 'echo', 'everything__nope'), badString, value),
          arguments: fc.oneof(fc.record({ message: badString }), value),
          _meta: fc.oneof(fc.constant(ENVELOPE as unknown), value, fc.record({ progressToken: value, 'io.modelcontextprotocol/protocolVersion': fc.oneof(fc.constant(MODERN), value) })),
          protocolVersion: fc.oneof(fc.constantFrom(LEGACY, MODERN), badString),
          clientInfo: fc.oneof(fc.record({ name: badString, version: badString }), value),
          capabilities: value,
          requestId: value,
          uri: badString,
        },
        { requiredKeys: [] },
      ),
      value,
    ),
  },
  { requiredKeys: [] },
);
const mcpBody = fc.oneof(
  rpcMessage.map((m) => JSON.stringify(m)),
  fc.array(rpcMessage, { maxLength: 4 }).map((b) => JSON.stringify(b)),
  fc.tuple(deepText).map(([d]) => `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"capabilities":${d}}}`),
  body,
);

interface Case {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string;
}

describe('fuzz: generated bad input never gets a 5xx, a hang or an undocumented error shape', () => {
  let db: TestDatabase;
  let app: TestApp;
  let session: Record<string, string>;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'none,api_key', MCP_API_KEYS: ADMIN_KEY, LOG_LEVEL: 'warn' });
    const created = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': ADMIN_KEY },
      body: JSON.stringify({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
    });
    assert.equal(created.status, 201);
    await eventually('connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/everything`, { headers: { 'x-api-key': ADMIN_KEY } })).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
    session = await legacySession(`${app.url}/mcp`);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  /** Sends one case; returns a description of what is wrong with the answer, or undefined. */
  async function problem(c: Case): Promise<string | undefined> {
    let res: Response;
    try {
      res = await fetch(`${app.url}${c.path}`, { method: c.method, headers: c.headers, body: c.body, signal: AbortSignal.timeout(REQUEST_MS) });
    } catch (error) {
      const e = error as Error & { cause?: { code?: string } };
      // A connection the server closed on purpose after an answer fetch could not read is not a hang.
      if (e.name === 'TimeoutError') return `no answer within ${REQUEST_MS} ms`;
      return `request failed: ${e.message} ${e.cause?.code ?? ''}`;
    }
    if (res.status >= 500) return `status ${res.status}: ${(await res.text()).slice(0, 300)}`;
    const type = res.headers.get('content-type') ?? '';
    if (type.includes('text/event-stream')) {
      await res.body?.cancel();
      return undefined;
    }
    const text = await res.text();
    if (res.status < 400) return undefined;
    // The sign-in pages (src/login) answer with a page; a refusal carries its stable code in data-error.
    if (type.startsWith('text/html') && /^\/log(in|out)(\/|\?|$)/.test(c.path)) return /data-error="[a-z_]+"/.test(text) ? undefined : `status ${res.status}: a page without data-error`;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return `status ${res.status} with a body that is not JSON: ${text.slice(0, 200)}`;
    }
    const isMcp = c.path === '/mcp' || c.path.startsWith('/mcp/') || c.path.startsWith('/mcp?');
    if (isMcp) {
      const m = json as { jsonrpc?: unknown; error?: { code?: unknown; message?: unknown } };
      if (m.jsonrpc !== '2.0' || typeof m.error?.code !== 'number' || typeof m.error.message !== 'string') return `status ${res.status}: not a JSON-RPC error: ${text.slice(0, 200)}`;
      return undefined;
    }
    const e = (json as { error?: { code?: unknown; message?: unknown; requestId?: unknown } }).error;
    if (Object.keys(json as object).join() !== 'error' || typeof e?.code !== 'string' || typeof e.message !== 'string' || typeof e.requestId !== 'string') {
      return `status ${res.status}: not the error envelope: ${text.slice(0, 200)}`;
    }
    return undefined;
  }

  const adminCase = fc
    .tuple(fc.constantFrom(...ROUTES), fc.array(pathSegment, { minLength: 3, maxLength: 3 }), body, contentType, fc.boolean(), fc.dictionary(fc.constantFrom('x-request-id', 'origin', 'accept', 'x-api-key'), headerValue, { maxKeys: 2 }))
    .map(([route, segments, b, type, admin, extra]): Case => {
      let i = 0;
      const path = route.path.replace(/:[a-z]+/gi, () => segments[i++]);
      const headers: Record<string, string> = { ...extra, ...(admin ? { 'x-api-key': ADMIN_KEY } : {}), ...(type ? { 'content-type': type } : {}) };
      return { method: route.method, path, headers, ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { body: b }) };
    });

  const mcpCase = fc
    .tuple(
      fc.constantFrom('POST', 'POST', 'POST', 'GET', 'DELETE', 'PUT'),
      fc.constantFrom('/mcp', '/mcp/everything', '/mcp/nope'),
      mcpBody,
      fc.constantFrom('legacy-session', 'modern', 'none', 'garbage-session'),
      fc.dictionary(fc.constantFrom('mcp-protocol-version', 'mcp-method', 'mcp-name', 'accept', 'last-event-id', 'mcp-session-id'), headerValue, { maxKeys: 3 }),
      contentType,
    )
    .map(([method, path, b, era, extra, type]): Case => {
      const base: Record<string, string> =
        era === 'legacy-session'
          ? { ...session }
          : era === 'modern'
            ? { accept: ACCEPT, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/call', 'mcp-name': 'everything__echo' }
            : era === 'garbage-session'
              ? { accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': 'garbage' }
              : { accept: ACCEPT };
      // Never DELETE the shared session (later cases use it).
      if (method === 'DELETE' && era === 'legacy-session') delete base['mcp-session-id'];
      const headers: Record<string, string> = { ...base, ...extra, ...(type ? { 'content-type': type } : {}) };
      if (method === 'DELETE' && headers['mcp-session-id'] === session['mcp-session-id']) delete headers['mcp-session-id'];
      return { method, path, headers, ...(method === 'POST' || method === 'PUT' ? { body: b } : {}) };
    });

  it(`${RUNS} generated requests to /mcp (both eras) and every admin route (seed ${SEED})`, async () => {
    const errorsBefore = app.logs.lines.filter((l) => l.level === 'error').length;
    try {
      await fc.assert(
        fc.asyncProperty(fc.oneof(adminCase, mcpCase), async (c) => {
          const wrong = await problem(c);
          if (wrong) throw new Error(`${c.method} ${c.path.slice(0, 120)} → ${wrong}`);
        }),
        { seed: SEED, numRuns: RUNS, endOnFailure: true },
      );
    } catch (error) {
      throw new Error(`fuzz failed (rerun with FUZZ_SEED=${SEED}): ${(error as Error).message.slice(0, 4_000)}`, { cause: error });
    }
    // Still serving, and nothing unexpected was logged.
    assert.equal((await fetch(`${app.url}/healthz`)).status, 200);
    const errors = app.logs.lines.filter((l) => l.level === 'error').slice(errorsBefore);
    assert.deepEqual(
      errors.map((l) => `${String(l.msg)} ${JSON.stringify(l.err ?? '').slice(0, 300)}`),
      [],
      'no error was logged while serving generated input',
    );
  });
});
