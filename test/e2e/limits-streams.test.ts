import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/upstreams.js';

const HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
const initialize = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'limits-streams', version: '1' } },
};

describe('notification streams per session and per principal (MCP_MAX_STREAMS_*)', () => {
  let db: TestDatabase;
  let app: TestApp;
  const held: AbortController[] = [];
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { HTTP_TRUST_PROXY: 'true', MCP_MAX_STREAMS_PER_SESSION: '2', MCP_MAX_STREAMS_PER_PRINCIPAL: '3',
      // The SDK client's kept-alive connections of hijacked (streamed) exchanges would hold the drain for their 4 s idle timeout.
      SHUTDOWN_TIMEOUT: '500',
    });
  });
  after(async () => {
    for (const a of held) a.abort();
    await app.shutdown('test done');
    await db.drop();
  });

  async function session(from: string): Promise<string> {
    const res = await fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...HEADERS, 'x-forwarded-for': from }, body: JSON.stringify(initialize) });
    assert.equal(res.status, 200);
    await res.text();
    return res.headers.get('mcp-session-id')!;
  }
  /** Opens a GET stream; a 200 stream stays open (its controller is kept to close it). */
  async function stream(id: string, from: string): Promise<{ status: number; body?: { error: { message: string } }; headers: Headers; abort: AbortController }> {
    const abort = new AbortController();
    const res = await fetch(`${app.url}/mcp`, {
      headers: { accept: 'text/event-stream', 'mcp-session-id': id, 'mcp-protocol-version': '2025-06-18', 'x-forwarded-for': from },
      signal: abort.signal,
    });
    if (res.status === 200) {
      held.push(abort);
      return { status: 200, headers: res.headers, abort };
    }
    return { status: res.status, headers: res.headers, body: (await res.json()) as { error: { message: string } }, abort };
  }

  it('refuses a third GET stream on one session (409) and a fourth per principal (429), naming the setting', async () => {
    const a = await session('10.8.0.1');
    assert.equal((await stream(a, '10.8.0.1')).status, 200);
    assert.equal((await stream(a, '10.8.0.1')).status, 200);
    const third = await stream(a, '10.8.0.1');
    assert.equal(third.status, 409);
    assert.match(third.body!.error.message, /MCP_MAX_STREAMS_PER_SESSION=2/);

    const b = await session('10.8.0.1');
    const last = await stream(b, '10.8.0.1');
    assert.equal(last.status, 200);
    const over = await stream(b, '10.8.0.1');
    assert.equal(over.status, 429);
    assert.match(over.body!.error.message, /\(3, MCP_MAX_STREAMS_PER_PRINCIPAL\)/);
    assert.ok(Number(over.headers.get('retry-after')) > 0);

    // Another client address is another owner under strategy none.
    const c = await session('10.8.0.2');
    assert.equal((await stream(c, '10.8.0.2')).status, 200);

    // Closing a stream frees its place.
    last.abort.abort();
    await eventually('the closed stream is released', async () => {
      const again = await stream(b, '10.8.0.1');
      return again.status === 200 ? true : undefined;
    }, 5_000);
  });

  it('counts subscriptions/listen streams against the same per-principal bound', async () => {
    const from = '10.9.0.1';
    const client = new Client({ name: 'listen-limits', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`), { requestInit: { headers: { 'x-forwarded-for': from } } }));
    try {
      const first = await client.listen({ toolsListChanged: true });
      const s = await session(from);
      assert.equal((await stream(s, from)).status, 200);
      const second = await stream(s, from);
      assert.equal(second.status, 200);
      // 3 held (1 listen + 2 GET): a further listen is refused.
      await assert.rejects(client.listen({ toolsListChanged: true }), /429|MCP_MAX_STREAMS_PER_PRINCIPAL|Too many/);
      second.abort.abort();
      await eventually('a place is free again', async () => {
        try {
          const sub = await client.listen({ toolsListChanged: true });
          await sub.close();
          return true;
        } catch {
          return undefined;
        }
      }, 5_000);
      await first.close();
    } finally {
      await client.close();
    }
  });
});
