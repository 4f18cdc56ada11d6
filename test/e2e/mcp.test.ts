import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, eventually, everythingOverHttp, processesWith, readStreamUntil } from '../support/upstreams.js';

interface RpcBody {
  jsonrpc: '2.0';
  id: number | string | null;
  result?: Record<string, unknown>;
  error?: { code: number; message: string };
}

const LEGACY_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = (id = 1) => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-test', version: '1' } },
});

async function rpc(url: string, body: unknown, headers: Record<string, string> = LEGACY_HEADERS): Promise<{ status: number; headers: Headers; body: RpcBody | undefined }> {
  const res = await fetch(url, { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
  const text = await res.text();
  const json = text.startsWith('event:') || text.startsWith('data:') ? text.split('\n').find((l) => l.startsWith('data:'))?.slice(5) : text;
  return { status: res.status, headers: res.headers, body: json ? (JSON.parse(json) as RpcBody) : undefined };
}

describe('the /mcp endpoint, both protocol eras', () => {
  let db: TestDatabase;
  let app: TestApp;
  const children: ChildProcess[] = [];
  const marker = `GH_MCP_MARKER_${randomUUID().replaceAll('-', '')}`;

  const register = async (body: Record<string, unknown>, on: TestApp = app) => {
    const res = await fetch(`${on.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    assert.equal(res.status, 201, await res.text());
    await eventually(`${String(body.name)} connected`, async () => {
      const v = (await (await fetch(`${on.url}/api/v1/servers/${String(body.name)}`)).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
  };

  const modernClient = async (path = '/mcp') => {
    const client = new Client({ name: 'modern-test', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}${path}`)));
    return client;
  };
  const legacyClient = async (url = `${app.url}/mcp`) => {
    const client = new LegacyClient({ name: 'legacy-test', version: '1' });
    const transport = new LegacyTransport(new URL(url));
    await client.connect(transport);
    return { client, transport };
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await register({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: '1' } });
    const http = await everythingOverHttp('streamableHttp');
    children.push(http.child);
    await register({ name: 'remote', transport: 'streamable_http', url: http.url, toolFilter: { allow: ['echo', 'get-sum', 'trigger-long-*'] } });
  });
  after(async () => {
    await app.shutdown('test done');
    for (const child of children) child.kill();
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it('modern client (SDK v2, 2026-07-28) lists and calls namespaced tools of stdio and HTTP upstreams', async () => {
    const client = await modernClient();
    try {
      assert.equal(client.getNegotiatedProtocolVersion(), '2026-07-28');
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      assert.ok(names.includes('everything__echo'));
      assert.ok(names.includes('everything__get-env'));
      assert.deepEqual(names.filter((n) => n.startsWith('remote__')).sort(), ['remote__echo', 'remote__get-sum', 'remote__trigger-long-running-operation'], 'the allow filter applies');
      const echo = tools.find((t) => t.name === 'everything__echo')!;
      assert.deepEqual(Object.keys((echo.inputSchema as { properties: object }).properties), ['message'], 'schema passed through');

      const fromStdio = await client.callTool({ name: 'everything__echo', arguments: { message: 'over stdio' } });
      assert.deepEqual(fromStdio.content, [{ type: 'text', text: 'Echo: over stdio' }]);
      const fromHttp = await client.callTool({ name: 'remote__get-sum', arguments: { a: 2, b: 40 } });
      assert.match(JSON.stringify(fromHttp.content), /42/);
    } finally {
      await client.close();
    }
  });

  it('legacy client (SDK v1, 2025 session) initializes, lists and calls, and ends its session', async () => {
    const { client, transport } = await legacyClient();
    const sessionId = transport.sessionId!;
    assert.ok(Buffer.from(sessionId, 'base64url').length >= 16, 'session id carries at least 128 random bits');
    const { tools } = await client.listTools();
    assert.ok(tools.some((t) => t.name === 'remote__echo'));
    const result = await client.callTool({ name: 'everything__echo', arguments: { message: 'legacy' } });
    assert.deepEqual(result.content, [{ type: 'text', text: 'Echo: legacy' }]);

    await transport.terminateSession();
    const after = await rpc(`${app.url}/mcp`, { jsonrpc: '2.0', id: 9, method: 'tools/list' }, { ...LEGACY_HEADERS, 'mcp-session-id': sessionId, 'mcp-protocol-version': '2025-06-18' });
    assert.equal(after.status, 404, 'an ended session is gone');
    const [row] = await db.query<{ closed: boolean }>('SELECT closed_at IS NOT NULL AS closed FROM mcp_sessions ORDER BY created_at DESC LIMIT 1');
    assert.equal(row.closed, true);
    const stored = await db.query<{ id: string }>('SELECT id FROM mcp_sessions');
    assert.ok(stored.every((r) => r.id !== sessionId), 'the session id itself is not stored');
    await client.close();
  });

  it('/mcp/<server> serves one upstream under its own names', async () => {
    const client = await modernClient('/mcp/everything');
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.some((t) => t.name === 'echo'));
      assert.ok(!tools.some((t) => t.name.includes('__')));
      const r = await client.callTool({ name: 'echo', arguments: { message: 'direct' } });
      assert.deepEqual(r.content, [{ type: 'text', text: 'Echo: direct' }]);
    } finally {
      await client.close();
    }
    const { client: legacy } = await legacyClient(`${app.url}/mcp/remote`);
    assert.deepEqual((await legacy.listTools()).tools.map((t) => t.name).sort(), ['echo', 'get-sum', 'trigger-long-running-operation']);
    const viaPool = await legacy.callTool({ name: 'echo', arguments: { message: 'pooled' } });
    assert.deepEqual(viaPool.content, [{ type: 'text', text: 'Echo: pooled' }], 'legacy call to an HTTP upstream (pooled forwarder)');
    await legacy.close();
  });

  it('passes progress notifications through and names the upstream on timeouts and failures', async () => {
    const client = await modernClient();
    try {
      const progress: number[] = [];
      const done = await client.callTool(
        { name: 'everything__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
        { onprogress: (p) => progress.push(p.progress) },
      );
      assert.ok(!done.isError);
      assert.ok(progress.length >= 2, `progress passed through (${progress.join(',')})`);
      const fromHttp: number[] = [];
      const overHttp = await client.callTool(
        { name: 'remote__trigger-long-running-operation', arguments: { duration: 1, steps: 3 } },
        { onprogress: (p) => fromHttp.push(p.progress) },
      );
      assert.ok(!overHttp.isError);
      assert.ok(fromHttp.length >= 2, `progress from an HTTP upstream passed through (${fromHttp.join(',')})`);
    } finally {
      await client.close();
    }

    await register({ name: 'slow', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: '1' }, timeoutMs: 300 });
    const { client: legacy } = await legacyClient();
    const started = Date.now();
    const slow = await legacy.callTool({ name: 'slow__trigger-long-running-operation', arguments: { duration: 5, steps: 2 } });
    assert.ok(Date.now() - started < 4_000, 'did not wait for the upstream');
    assert.equal(slow.isError, true);
    assert.match(JSON.stringify(slow.content), /Upstream MCP server \\"slow\\" failed: no answer within 300 ms/);
    await fetch(`${app.url}/api/v1/servers/slow`, { method: 'DELETE' });
    await legacy.close();
  });

  it('passes cancellation through to the upstream, from either era', async () => {
    const log = join(mkdtempSync(join(tmpdir(), 'gatehouse-cancel-')), 'cancelled.log');
    writeFileSync(log, '');
    await register({ name: 'slowpoke', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/slow-upstream.mjs')], env: { CANCEL_LOG: log, [marker]: '1' } });
    const cancellations = () => readFileSync(log, 'utf8').split('\n').filter(Boolean).length;

    const { client: legacy } = await legacyClient();
    const legacyAbort = new AbortController();
    const legacyCall = legacy.callTool({ name: 'slowpoke__wait', arguments: { ms: 10_000 } }, undefined, { signal: legacyAbort.signal }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    legacyAbort.abort('user pressed stop');
    assert.ok((await legacyCall) instanceof Error);
    await eventually('the upstream saw the legacy cancellation', () => (cancellations() >= 1 ? true : undefined), 5_000);
    await legacy.close();

    const modern = await modernClient();
    const modernAbort = new AbortController();
    const modernCall = modern.callTool({ name: 'slowpoke__wait', arguments: { ms: 10_000 } }, { signal: modernAbort.signal }).catch((e: Error) => e);
    await new Promise((r) => setTimeout(r, 300));
    modernAbort.abort('user pressed stop');
    assert.ok((await modernCall) instanceof Error);
    await eventually('the upstream saw the modern cancellation', () => (cancellations() >= 2 ? true : undefined), 5_000);
    await modern.close();
    await fetch(`${app.url}/api/v1/servers/slowpoke`, { method: 'DELETE' });
  });

  it('answers bad input with the spec’s errors', async () => {
    const url = `${app.url}/mcp`;
    const init = await rpc(url, initialize());
    const session = init.headers.get('mcp-session-id')!;
    const inSession = { ...LEGACY_HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };

    const malformed = await rpc(url, '{"jsonrpc": "2.0", "id": 1, "method": ', inSession);
    assert.equal(malformed.status, 400);
    assert.equal(malformed.body?.error?.code, -32700, 'parse error');

    const unknownMethod = await rpc(url, { jsonrpc: '2.0', id: 2, method: 'tools/frobnicate' }, inSession);
    assert.equal(unknownMethod.body?.error?.code, -32601, 'method not found');

    const bareName = await rpc(url, { jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: {} } }, inSession);
    assert.equal(bareName.body?.error?.code, -32602);
    assert.match(bareName.body?.error?.message ?? '', /<server>__<tool>/);

    const noSession = await rpc(url, { jsonrpc: '2.0', id: 4, method: 'tools/list' });
    assert.equal(noSession.status, 400, 'a legacy request without a session id');

    const unknownSession = await rpc(url, { jsonrpc: '2.0', id: 5, method: 'tools/list' }, { ...inSession, 'mcp-session-id': 'not-a-session' });
    assert.equal(unknownSession.status, 404);

    const badVersion = await rpc(url, { jsonrpc: '2.0', id: 6, method: 'tools/list' }, { ...inSession, 'mcp-protocol-version': '1999-01-01' });
    assert.equal(badVersion.status, 400, 'unsupported MCP-Protocol-Version');

    const badAccept = await rpc(url, initialize(7), { 'content-type': 'application/json', accept: 'text/html' });
    assert.equal(badAccept.status, 406);

    const unknownServer = await rpc(`${app.url}/mcp/nope`, initialize(8));
    assert.equal(unknownServer.status, 404);

    const big = await rpc(url, { jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'x'.repeat(11 * 1024 * 1024) } } }, inSession);
    assert.equal(big.status, 413);
    assert.equal(big.body?.jsonrpc, '2.0');
  });

  it('validates modern-era headers against the body (400, the spec’s error code)', async () => {
    const envelope = {
      'io.modelcontextprotocol/protocolVersion': '2026-07-28',
      'io.modelcontextprotocol/clientInfo': { name: 'raw-modern', version: '1' },
      'io.modelcontextprotocol/clientCapabilities': {},
    };
    const body = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'm' }, _meta: envelope } };
    const headers = { ...LEGACY_HEADERS, 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'everything__echo' };
    const ok = await rpc(`${app.url}/mcp`, body, headers);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.deepEqual((ok.body?.result as { content: unknown }).content, [{ type: 'text', text: 'Echo: m' }]);

    const wrongMethod = await rpc(`${app.url}/mcp`, body, { ...headers, 'mcp-method': 'tools/list' });
    assert.equal(wrongMethod.status, 400);
    assert.ok(wrongMethod.body?.error, 'a JSON-RPC error');
    const wrongName = await rpc(`${app.url}/mcp`, body, { ...headers, 'mcp-name': 'everything__other' });
    assert.equal(wrongName.status, 400);
    assert.equal(wrongName.body?.error?.code, wrongMethod.body?.error?.code, 'the same header-mismatch code');

    const discover = await rpc(`${app.url}/mcp`, { jsonrpc: '2.0', id: 2, method: 'server/discover', params: { _meta: envelope } }, { ...headers, 'mcp-method': 'server/discover', 'mcp-name': '' });
    assert.equal(discover.status, 200, JSON.stringify(discover.body));
    assert.ok((discover.body?.result?.supportedVersions as string[]).includes('2026-07-28'));
  });

  it('reads prompts and resources of an upstream through the aggregated names', async () => {
    const client = await modernClient();
    try {
      const { prompts } = await client.listPrompts();
      const prompt = prompts.find((p) => p.name.startsWith('everything__'))!;
      assert.ok(prompt, 'namespaced prompts are listed');
      const { resources } = await client.listResources();
      const resource = resources.find((r) => r.uri.startsWith('gatehouse://everything/'))!;
      assert.ok(resource, 'resource URIs are wrapped per server');
      const read = await client.readResource({ uri: resource.uri });
      assert.equal(read.contents[0].uri, resource.uri, 'contents carry the URI the client asked for');
      const simple = prompts.find((p) => p.name.startsWith('everything__') && !(p.arguments ?? []).some((a) => a.required));
      assert.ok(simple, `a prompt without required arguments among ${prompts.map((p) => p.name).join(', ')}`);
      const got = await client.getPrompt({ name: simple.name });
      assert.ok(got.messages.length > 0, 'the upstream prompt came back through the gateway');
    } finally {
      await client.close();
    }
  });

  it('rejects a foreign Origin or Host with 403 (DNS rebinding protection)', async () => {
    const origin = await rpc(`${app.url}/mcp`, initialize(), { ...LEGACY_HEADERS, origin: 'https://evil.example' });
    assert.equal(origin.status, 403);
    assert.match(origin.body?.error?.message ?? '', /Origin "https:\/\/evil.example" is not allowed/);
    const local = await rpc(`${app.url}/mcp`, initialize(), { ...LEGACY_HEADERS, origin: 'http://localhost:3000' });
    assert.equal(local.status, 200);
    const { request } = await import('node:http');
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(`${app.url}/mcp`, { method: 'POST', headers: { ...LEGACY_HEADERS, host: 'attacker.example:3000' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end(JSON.stringify(initialize()));
    });
    assert.equal(status, 403);
  });

  it('a legacy session opened on one replica continues on another, and list-changed reaches a stream held there', async () => {
    const other = await startTestApp(db.url);
    try {
      const init = await rpc(`${app.url}/mcp`, initialize());
      const session = init.headers.get('mcp-session-id')!;
      const headers = { ...LEGACY_HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };
      await eventually('replica B connected to upstreams', async () => {
        const r = await rpc(`${other.url}/mcp`, { jsonrpc: '2.0', id: 2, method: 'tools/list' }, headers);
        return r.status === 200 && ((r.body?.result?.tools as unknown[]) ?? []).length > 10 ? r : undefined;
      });

      // Hold the session's GET stream on B, then change the upstream set through A.
      const stream = await fetch(`${other.url}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } });
      assert.equal(stream.status, 200, stream.status === 200 ? '' : await stream.text());
      const listChanged = readStreamUntil(stream, 'notifications/tools/list_changed');
      await register({ name: 'added-later', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: '1' } });
      const text = await listChanged;
      assert.match(text, /notifications\/tools\/list_changed/);

      // DELETE on B ends it for A too.
      const del = await fetch(`${other.url}/mcp`, { method: 'DELETE', headers: { 'mcp-session-id': session } });
      assert.equal(del.status, 200, await del.text());
      await eventually('session ended on A', async () => ((await rpc(`${app.url}/mcp`, { jsonrpc: '2.0', id: 3, method: 'tools/list' }, headers)).status === 404 ? true : undefined));
      await fetch(`${app.url}/api/v1/servers/added-later`, { method: 'DELETE' });
    } finally {
      await other.shutdown('test');
    }
  });

  it('delivers change notices to a modern subscriptions/listen stream', async () => {
    const client = await modernClient();
    try {
      let changed = 0;
      client.setNotificationHandler('notifications/tools/list_changed', () => {
        changed++;
      });
      const subscription = await client.listen({ toolsListChanged: true });
      assert.equal(subscription.honoredFilter.toolsListChanged, true);
      await register({ name: 'listen-added', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: '1' } });
      await eventually('tools/list_changed on the listen stream', () => (changed > 0 ? true : undefined), 10_000);
      await subscription.close();
      assert.equal(await subscription.closed, 'local');
      await fetch(`${app.url}/api/v1/servers/listen-added`, { method: 'DELETE' });
    } finally {
      await client.close();
    }
  });

  it('shutdown ends held notification streams instead of waiting for them', async () => {
    const own = await createTestDatabase();
    const short = await startTestApp(own.url, { SHUTDOWN_TIMEOUT: '8000' });
    try {
      const init = await rpc(`${short.url}/mcp`, initialize());
      const session = init.headers.get('mcp-session-id')!;
      const legacyStream = await fetch(`${short.url}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } });
      assert.equal(legacyStream.status, 200);
      const modern = new Client({ name: 'listener', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
      await modern.connect(new StreamableHTTPClientTransport(new URL(`${short.url}/mcp`)));
      const subscription = await modern.listen({ toolsListChanged: true });

      const started = Date.now();
      assert.equal(await short.shutdown('SIGTERM'), 0, 'drained cleanly, nothing had to be cut');
      assert.ok(Date.now() - started < 5_000, `shutdown took ${Date.now() - started} ms`);
      assert.notEqual(await subscription.closed, 'local', 'the server ended the listen stream');
      await modern.close().catch(() => undefined);
    } finally {
      await short.shutdown('again');
      await own.drop();
    }
  });

  it('churns 200 legacy sessions without a process or session left behind', async () => {
    const before = processesWith(marker).length;
    const now = (await db.query<{ now: Date }>('SELECT now() AS now'))[0].now;
    for (let i = 0; i < 200; i++) {
      const init = await rpc(`${app.url}/mcp`, initialize(i));
      assert.equal(init.status, 200, JSON.stringify(init.body));
      const session = init.headers.get('mcp-session-id')!;
      const headers = { ...LEGACY_HEADERS, 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' };
      if (i % 20 === 0) {
        const call = await rpc(`${app.url}/mcp`, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'everything__echo', arguments: { message: String(i) } } }, headers);
        assert.equal(call.status, 200, JSON.stringify(call.body));
      }
      const del = await fetch(`${app.url}/mcp`, { method: 'DELETE', headers: { 'mcp-session-id': session, 'mcp-protocol-version': '2025-06-18' } });
      assert.equal(del.status, 200, await del.text());
    }
    assert.equal(processesWith(marker).length, before, 'sessions share the upstream process; none is left behind');
    const [counts] = await db.query<{ opened: string; open: string }>(
      'SELECT count(*)::text AS opened, count(*) FILTER (WHERE closed_at IS NULL)::text AS open FROM mcp_sessions WHERE created_at >= $1',
      [now],
    );
    assert.equal(Number(counts.opened), 200);
    assert.equal(Number(counts.open), 0, 'no session left open');
  });
});
