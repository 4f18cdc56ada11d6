import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import { HttpUpstream } from '../../test/support/http-upstream.js';
import { until } from '../../test/support/until.js';
import { UpstreamConnection } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';

const quiet = { info: () => undefined, warn: () => undefined, debug: () => undefined };

function httpServer(url: string, extra: Partial<UpstreamServerEntity> = {}): UpstreamServerEntity {
  return Object.assign(new UpstreamServerEntity(), {
    name: 'remote',
    transport: 'streamable_http' as const,
    command: null,
    args: [],
    env: {},
    cwd: null,
    url,
    headers: {},
    enabled: true,
    timeoutMs: 10_000,
    toolFilter: { allow: [], deny: [] },
    inject: {},
    ...extra,
  });
}

const text = (result: { content?: unknown }) => (result.content as { text: string }[])[0].text;

describe('UpstreamConnection to a streamable-HTTP upstream (2025 session, pooled forwarder)', () => {
  let upstream: HttpUpstream;
  const open: UpstreamConnection[] = [];
  before(async () => (upstream = await HttpUpstream.start()));
  after(async () => {
    await Promise.all(open.map((c) => c.close('test over')));
    await upstream.close();
  });
  beforeEach(() => {
    Object.assign(upstream.behaviour, { eol: '\n', sse: true, sliceBytes: 0, refusals: [], lostSession: { status: 404, body: '' }, redirect: undefined });
    upstream.received.length = 0;
    upstream.cancelled.length = 0;
  });
  const connect = async (extra: Partial<UpstreamServerEntity> = {}, http: ConstructorParameters<typeof UpstreamConnection>[1]['http'] = {}) => {
    const c = new UpstreamConnection(httpServer(upstream.url, extra), { log: quiet, onToolsChanged: () => undefined, http: { retry: { baseMs: 1, maxMs: 5, maxAttempts: 4 }, ...http } });
    open.push(c);
    await c.connect();
    assert.equal(c.state, 'connected', c.getStatus().lastError ?? '');
    return c;
  };

  for (const eol of ['\r\n', '\r'] as const) {
    it(`reads SSE answers framed with ${JSON.stringify(eol)} line ends (Python SDK servers use CRLF)`, async () => {
      const c = await connect();
      upstream.behaviour.eol = eol;
      const progress: unknown[] = [];
      const result = await c.callTool({ name: 'echo', arguments: { text: 'über' } }, { onProgress: (p) => progress.push(p) });
      assert.equal(text(result), 'über');
      assert.equal(progress.length, 1);
    });
  }

  it('keeps multi-byte characters whole when the network splits them', async () => {
    const c = await connect();
    Object.assign(upstream.behaviour, { sliceBytes: 7 });
    const result = await c.callTool({ name: 'big', arguments: { chars: 3000 } }, {});
    assert.equal(text(result), 'é'.repeat(3000));
  });

  it('fails an SSE event that never ends at the size cap, reading no further (backpressure)', async () => {
    const c = await connect({}, { limits: { maxEventChars: 1024 * 1024, maxResponseBytes: 64 * 1024 * 1024 } });
    upstream.endlessBytes = 0;
    await assert.rejects(c.callTool({ name: 'endless' }, {}), /exceeded 1048576 characters \(GATEHOUSE_HTTP_MAX_EVENT_SIZE\)/);
    const written = upstream.endlessBytes;
    await new Promise((r) => setTimeout(r, 100));
    // What the socket buffers hold at most, not a stream that goes on being read.
    assert.ok(upstream.endlessBytes - written < 8 * 1024 * 1024, `the upstream kept writing: ${upstream.endlessBytes - written} bytes`);
    assert.equal(c.state, 'connected');
  });

  for (const lost of [{ status: 404, body: '' }, { status: 400, body: '{"jsonrpc":"2.0","id":null,"error":{"code":-32000,"message":"Bad Request: No valid session ID provided"}}' }]) {
    it(`re-initializes a session the upstream forgot (HTTP ${lost.status}) and retries the call once, saying so in status`, async () => {
      const c = await connect();
      upstream.behaviour.lostSession = lost;
      upstream.forgetSessions();
      const inits = upstream.received.filter((m) => m.method === 'initialize').length;
      const [a, b] = await Promise.all([
        c.callTool({ name: 'echo', arguments: { text: 'a' } }, {}),
        c.callTool({ name: 'echo', arguments: { text: 'b' } }, {}),
      ]);
      assert.deepEqual([text(a), text(b)], ['a', 'b']);
      assert.equal(upstream.received.filter((m) => m.method === 'initialize').length, inits + 1, 'one new session for both calls');
      const status = c.getStatus();
      assert.equal(status.state, 'connected');
      assert.match(status.lastRecovery ?? '', new RegExp(`HTTP ${lost.status}.*re-initialized the session and retried`));
    });
  }

  it('retries 429 and 503 refusals with backoff, honouring Retry-After, then answers', async () => {
    const c = await connect();
    upstream.behaviour.refusals = [{ status: 429, retryAfter: '0' }, { status: 503 }];
    const result = await c.callTool({ name: 'echo', arguments: { text: 'ok' } }, {});
    assert.equal(text(result), 'ok');
    assert.equal(upstream.calls('echo').length, 3);
  });

  it('retries refusals on the SDK client too: a refused tools/list at connect still connects', async () => {
    upstream.behaviour.refusalMethod = 'tools/list';
    upstream.behaviour.refusals = [{ status: 503, retryAfter: '0' }, { status: 429 }];
    try {
      const c = await connect();
      assert.equal(c.listTools().length, 5);
      assert.equal(upstream.behaviour.refusals.length, 0);
    } finally {
      upstream.behaviour.refusalMethod = undefined;
    }
  });

  it('renews a forgotten session for requests on the SDK client (prompts/get) too, once', async () => {
    const c = await connect();
    upstream.forgetSessions();
    const result = await c.withClient(undefined, (client, signal) => client.getPrompt({ name: 'greet' }, { signal }));
    assert.equal(result.messages.length, 1);
    assert.match(c.getStatus().lastRecovery ?? '', /HTTP 404.*re-initialized/);
  });

  it('gives up on a refusal whose Retry-After ends past the call deadline, at once', async () => {
    const c = await connect({ timeoutMs: 2_000 });
    upstream.behaviour.refusals = [{ status: 429, retryAfter: '60' }];
    const started = Date.now();
    await assert.rejects(c.callTool({ name: 'echo', arguments: { text: 'x' } }, {}), /HTTP 429 Too Many Requests/);
    assert.ok(Date.now() - started < 1_000);
    assert.equal(upstream.calls('echo').length, 1);
  });

  it('stops after the last attempt when every answer is a refusal', async () => {
    const c = await connect();
    upstream.behaviour.refusals = Array.from({ length: 10 }, () => ({ status: 503 }));
    await assert.rejects(c.callTool({ name: 'echo' }, {}), /HTTP 503 Service Unavailable/);
    assert.equal(upstream.calls('echo').length, 4);
  });

  it('never sends a tools/call again once the upstream may have run it (connection dropped after the request)', async () => {
    const c = await connect();
    await assert.rejects(c.callTool({ name: 'reset' }, {}));
    assert.equal(upstream.calls('reset').length, 1);
  });

  it('sends notifications/cancelled when the caller cancels', async () => {
    const c = await connect();
    const abort = new AbortController();
    const call = c.callTool({ name: 'wait', arguments: { ms: 30_000 } }, { signal: abort.signal });
    await until(() => upstream.calls('wait').length === 1);
    abort.abort();
    await assert.rejects(call);
    await until(() => upstream.cancelled.length === 1);
    assert.equal(upstream.cancelled[0].requestId, upstream.calls('wait')[0].id);
    assert.equal(upstream.cancelled[0].reason, 'cancelled by the client');
  });

  it("sends notifications/cancelled when Gatehouse's own timeout fires", async () => {
    const c = await connect({ timeoutMs: 300 });
    await assert.rejects(c.callTool({ name: 'wait', arguments: { ms: 30_000 } }, {}), /timed out after 300 ms/);
    await until(() => upstream.cancelled.length === 1);
    assert.equal(upstream.cancelled[0].requestId, upstream.calls('wait')[0].id);
    assert.match(String(upstream.cancelled[0].reason), /timed out/);
  });

  it('follows a 307 within the origin on calls, as on lists', async () => {
    upstream.behaviour.redirect = { status: 307 };
    try {
      const c = await connect();
      upstream.paths.length = 0;
      assert.equal(text(await c.callTool({ name: 'echo', arguments: { text: 'moved' } }, {})), 'moved');
      assert.deepEqual(upstream.paths, ['/mcp', '/mcp/']);
    } finally {
      upstream.behaviour.redirect = undefined;
    }
  });

  it('refuses a redirect to another origin unless the server lists it in redirectOrigins', async () => {
    const other = await HttpUpstream.start();
    try {
      const c = await connect();
      upstream.behaviour.redirect = { status: 307, to: other.url };
      await assert.rejects(c.callTool({ name: 'echo' }, {}), /HTTP 307 redirect to http:\/\/127\.0\.0\.1:\d+\/mcp not followed: another origin \(list it in the server's redirectOrigins/);
      assert.equal(other.calls().length, 0);

      // Allowed: the handshake (SDK client) and the calls (forwarder) both go there.
      const allowed = await connect({ redirectOrigins: [new URL(other.url).origin] });
      assert.equal(text(await allowed.callTool({ name: 'echo', arguments: { text: 'over there' } }, {})), 'over there');
      assert.equal(other.calls('echo').length, 1);
      assert.equal(other.received.filter((m) => m.method === 'initialize').length, 1);
    } finally {
      upstream.behaviour.redirect = undefined;
      await other.close();
    }
  });

  it('remembers a 308 for later calls', async () => {
    upstream.behaviour.redirect = { status: 308 };
    try {
      const c = await connect();
      await c.callTool({ name: 'echo' }, {});
      upstream.paths.length = 0;
      await c.callTool({ name: 'echo' }, {});
      assert.deepEqual(upstream.paths, ['/mcp/']);
    } finally {
      upstream.behaviour.redirect = undefined;
    }
  });
});
