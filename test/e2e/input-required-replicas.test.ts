import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { DataSource } from 'typeorm';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { findLeaks } from '../support/leaks.js';
import { modernRequest, type RpcBody } from '../support/mcp-raw.js';
import { connectedOn, eventually, registerConnected } from '../support/upstreams.js';

/**
 * A 2026-07-28 `input_required` retry (MRTR) served by any replica: the call is parked on the
 * replica that started it, and a retry that an ingress without affinity sends to another
 * replica is relayed to it (mailbox row + change bus) and answered as if it had reached it.
 */

const FIXTURE = resolve('test/fixtures/subscribable-upstream.mjs');
const SLOW = resolve('test/fixtures/ask-then-wait-upstream.mjs');
const SECRET = 'a-shared-secret-of-at-least-32-characters-for-mrtr';
const ADMIN_KEY = 'mrtr-replicas-admin-key-0123456789';
const RELAY_TIMEOUT_MS = 1_500;
const ENV = {
  MCP_AUTH_STRATEGY: 'bearer,api_key',
  MCP_JWT_SECRET: SECRET,
  MCP_JWT_ISSUER: 'https://idp.example.com',
  MCP_JWT_AUDIENCE: 'gatehouse',
  MCP_API_KEYS: ADMIN_KEY,
  GATEHOUSE_INPUT_REQUIRED_RELAY_TIMEOUT: String(RELAY_TIMEOUT_MS),
};
const CAPS = { sampling: {}, elicitation: { form: {} } };
const SAMPLED = 'sampled on the client';

const bearer = async (sub: string) => `Bearer ${await hsToken(SECRET, { sub, aud: 'gatehouse' }, { issuer: 'https://idp.example.com' })}`;

type InputRequired = { resultType: 'input_required'; inputRequests: Record<string, { method: string }>; requestState: string };

type Retry = { requestState: string; inputResponses: Record<string, unknown> };

/** POSTs a raw 2026-07-28 request to `app` at `path` as `authorization` (a retry when `retry` is given); its JSON-RPC response. */
async function modern(app: TestApp, path: string, method: string, params: Record<string, unknown>, authorization: string, retry?: Retry, signal?: AbortSignal) {
  const { body, headers } = modernRequest(method, { ...params, ...retry, _meta: { 'io.modelcontextprotocol/clientCapabilities': CAPS } });
  const res = await fetch(`${app.url}${path}`, { method: 'POST', headers: { ...headers, authorization }, body: JSON.stringify(body), signal });
  const text = await res.text();
  // JSON, or an SSE stream whose log notifications come before the response.
  const messages = text.startsWith('{') ? [text] : text.split('\n').flatMap((l) => (l.startsWith('data:') ? [l.slice(5)] : []));
  const response = messages.map((m) => JSON.parse(m) as RpcBody & { method?: string }).find((m) => m.method === undefined);
  return { status: res.status, body: response };
}

/** `prompts/get interview` on /mcp/subs: elicits a name, then samples (two rounds). */
const interview = (app: TestApp, authorization: string, retry?: Retry) =>
  modern(app, '/mcp/subs', 'prompts/get', { name: 'interview', arguments: { topic: 'replicas' } }, authorization, retry);

/** `tools/call ask-then-wait` on /mcp/slow: elicits a name, then works `ms` ms. */
const askThenWait = (app: TestApp, authorization: string, ms: number, retry?: Retry, signal?: AbortSignal) =>
  modern(app, '/mcp/slow', 'tools/call', { name: 'ask-then-wait', arguments: { ms } }, authorization, retry, signal);

/** The embedded request key of `method` in an input_required result. */
function keyOf(result: InputRequired, method: string): string {
  const key = Object.keys(result.inputRequests).find((k) => result.inputRequests[k].method === method);
  assert.ok(key, `no ${method} in ${JSON.stringify(result)}`);
  return key;
}

describe('input_required retries across replicas', () => {
  let db: TestDatabase;
  let a: TestApp;
  let b: TestApp;
  const cancelLog = join(mkdtempSync(join(tmpdir(), 'gatehouse-mrtr-')), 'cancelled.log');

  before(async () => {
    db = await createTestDatabase();
    a = await startTestApp(db.url, ENV);
    b = await startTestApp(db.url, ENV);
    const admin = { 'x-api-key': ADMIN_KEY };
    await registerConnected(a.url, { name: 'subs', transport: 'stdio', command: process.execPath, args: [FIXTURE] }, admin);
    await registerConnected(a.url, { name: 'slow', transport: 'stdio', command: process.execPath, args: [SLOW], env: { CANCEL_LOG: cancelLog } }, admin);
    await connectedOn(b.url, 'subs', admin);
    await connectedOn(b.url, 'slow', admin);
  });
  after(async () => {
    await a.shutdown('test done');
    await b.shutdown('test done');
    await db.drop();
  });

  it('an SDK v2 client whose retries alternate replicas: the call starts on A, round 1 is answered through B, round 2 through A, and the upstream sees both answers', async () => {
    const routed: string[] = [];
    // The ingress: the call itself goes to A; retries (they carry requestState) go to B, then A.
    const retryTargets = [b.url, a.url];
    const ingress = (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      const retry = typeof init?.body === 'string' && init.body.includes('"requestState"');
      const origin = retry ? (retryTargets.shift() ?? a.url) : a.url;
      routed.push(`${retry ? 'retry' : 'call'}→${origin === a.url ? 'A' : 'B'}`);
      return fetch(new URL(url.pathname + url.search, origin), init);
    };
    const client = new Client({ name: 'v2-ingress', version: '1' }, { capabilities: CAPS, versionNegotiation: { mode: 'auto' } });
    let elicited = 0;
    let sampled = 0;
    client.setRequestHandler('elicitation/create', () => (elicited++, Promise.resolve({ action: 'accept' as const, content: { name: 'Ada' } })));
    client.setRequestHandler('sampling/createMessage', () => (sampled++, Promise.resolve({ role: 'assistant' as const, model: 'm', content: { type: 'text' as const, text: SAMPLED } })));
    await client.connect(
      new StreamableHTTPClientTransport(new URL(`${a.url}/mcp/subs`), { fetch: ingress, requestInit: { headers: { authorization: await bearer('alice') } } }),
    );
    try {
      const prompt = await client.getPrompt({ name: 'interview', arguments: { topic: 'replicas' } });
      assert.equal(elicited, 1);
      assert.equal(sampled, 1);
      const said = prompt.messages.map((m) => (m.content.type === 'text' ? m.content.text : '')).join('\n');
      assert.equal(said, `interview of Ada (${SAMPLED}) on replicas`);
      assert.deepEqual(
        routed.filter((r) => r.startsWith('retry')),
        ['retry→B', 'retry→A'],
      );
    } finally {
      await client.close();
    }
  });

  it('a retry on B by another principal is refused with -32602, and the owner’s own retry on B still succeeds; no token in logs or the refusal', async () => {
    const alice = await bearer('alice');
    const first = await interview(a, alice);
    const round1 = first.body?.result as InputRequired;
    assert.equal(round1?.resultType, 'input_required', JSON.stringify(first.body));
    const elicitation = keyOf(round1, 'elicitation/create');
    const answer = { [elicitation]: { action: 'accept', content: { name: 'Grace' } } };

    const mallory = await bearer('mallory');
    const foreign = await interview(b, mallory, { requestState: round1.requestState, inputResponses: answer });
    assert.equal(foreign.body?.error?.code, -32602, JSON.stringify(foreign.body));
    assert.match(foreign.body.error.message, /requestState/);

    const own = await interview(b, alice, { requestState: round1.requestState, inputResponses: answer });
    const round2 = own.body?.result as InputRequired;
    assert.equal(round2?.resultType, 'input_required', JSON.stringify(own.body));
    const sampling = keyOf(round2, 'sampling/createMessage');
    const done = await interview(b, alice, {
      requestState: round2.requestState,
      inputResponses: { [sampling]: { role: 'assistant', model: 'm', content: { type: 'text', text: 'via B twice' } } },
    });
    assert.match(JSON.stringify(done.body?.result), /interview of Grace \(via B twice\) on replicas/);
    const tokens = { alice: alice.slice('Bearer '.length), mallory: mallory.slice('Bearer '.length) };
    assert.deepEqual(findLeaks(tokens, { 'logs of A': [a.logs.raw], 'logs of B': [b.logs.raw], 'the refusal': [JSON.stringify(foreign.body)] }), []);
  });

  it('a relayed round that runs longer than the relay bound is kept alive by the owner and answered through B', async () => {
    const alice = await bearer('alice');
    const ms = RELAY_TIMEOUT_MS * 2;
    const first = await askThenWait(a, alice, ms);
    const round1 = first.body?.result as InputRequired;
    assert.equal(round1?.resultType, 'input_required', JSON.stringify(first.body));
    const done = await askThenWait(b, alice, ms, { requestState: round1.requestState, inputResponses: { [keyOf(round1, 'elicitation/create')]: { action: 'accept', content: { name: 'Linus' } } } });
    assert.match(JSON.stringify(done.body), new RegExp(`confirmed by Linus after ${ms} ms`));
  });

  it('a client that goes away from B during a relayed round has the call cancelled on the owner', async () => {
    const alice = await bearer('alice');
    const first = await askThenWait(a, alice, 60_000);
    const round1 = first.body?.result as InputRequired;
    assert.equal(round1?.resultType, 'input_required', JSON.stringify(first.body));
    const gone = new AbortController();
    const retry = askThenWait(b, alice, 60_000, { requestState: round1.requestState, inputResponses: { [keyOf(round1, 'elicitation/create')]: { action: 'accept', content: { name: 'Barbara' } } } }, gone.signal);
    setTimeout(() => gone.abort(), 500);
    await assert.rejects(retry, /abort/i);
    await eventually('the upstream call cancelled', () => (existsSync(cancelLog) && readFileSync(cancelLog, 'utf8').includes('cancelled Barbara') ? true : undefined), 10_000);
  });

  it('the replica holding the call is gone: a retry on B gets -32602 "call again" within the relay bound; expired mailbox rows are swept', async () => {
    const c = await startTestApp(db.url, ENV);
    await connectedOn(c.url, 'subs', { 'x-api-key': ADMIN_KEY });
    const alice = await bearer('alice');
    let round1: InputRequired;
    try {
      const first = await interview(c, alice);
      round1 = first.body?.result as InputRequired;
      assert.equal(round1?.resultType, 'input_required', JSON.stringify(first.body));
    } finally {
      await c.shutdown('owner gone');
    }

    // A leftover from an earlier relay, past GATEHOUSE_INPUT_REQUIRED_TTL: swept by the next relay.
    await a.app.get(DataSource).query(
      `INSERT INTO input_required_relay (id, owner_instance, principal_id, target, request_state, input_responses, expires_at)
       VALUES (gen_random_uuid(), 'gone', 'alice', 'subs', 'stale', '{}', now() - interval '1 second')`,
    );
    const started = Date.now();
    const retry = await interview(b, alice, { requestState: round1.requestState, inputResponses: { [keyOf(round1, 'elicitation/create')]: { action: 'decline' } } });
    const elapsed = Date.now() - started;
    assert.equal(retry.body?.error?.code, -32602, JSON.stringify(retry.body));
    assert.match(retry.body.error.message, /call again without it/);
    assert.ok(elapsed < RELAY_TIMEOUT_MS + 2_000, `answered after ${elapsed} ms`);
    // Nothing is left in the mailbox: the answered row is deleted, the expired one swept.
    const rows = await a.app.get(DataSource).query<{ n: number }[]>('SELECT count(*)::int AS n FROM input_required_relay');
    assert.equal(rows[0].n, 0);
  });
});
