import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { legacyRequest, legacySession, rpc } from '../support/mcp-raw.js';
import { eventually, readStreamUntil, registerConnected } from '../support/upstreams.js';

const FIXTURE = resolve('test/fixtures/paged-upstream.mjs');
const PAGED = { name: 'paged', transport: 'stdio', command: process.execPath, args: [FIXTURE] };
/** 100 pages × 3 tools plus add_prompt, add_resource, links. */
const TOOL_COUNT = 303;

describe('lists: upstreams of any size, Gatehouse’s own pages, list_changed per kind', () => {
  let db: TestDatabase;
  let app: TestApp;
  const modern = async (path: string) => {
    const c = new Client({ name: 'lists-test', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await c.connect(new StreamableHTTPClientTransport(new URL(`${app.url}${path}`)));
    return c;
  };
  const status = async (name: string) => ((await (await fetch(`${app.url}/api/v1/servers/${name}`)).json()) as { status: { state: string; lastError: string | null; toolCount: number } }).status;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_LIST_PAGE_SIZE: '50' });
    await registerConnected(app.url, PAGED);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('walks an upstream needing more than 64 pages (the SDK client’s limit) and serves all of it', async () => {
    assert.equal((await status('paged')).toolCount, TOOL_COUNT);
    const c = await modern('/mcp/paged');
    try {
      const { tools } = await c.listTools();
      assert.equal(tools.length, TOOL_COUNT);
      assert.equal(new Set(tools.map((t) => t.name)).size, TOOL_COUNT);
      const called = await c.callTool({ name: 't0299', arguments: {} });
      assert.deepEqual(called.content, [{ type: 'text', text: 'called t0299' }]);
    } finally {
      await c.close();
    }
  });

  it('refuses an upstream whose pagination never ends, naming why', async () => {
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...PAGED, name: 'looping', env: { LOOP: '1' } }),
    });
    assert.equal(res.status, 201);
    const s = await eventually('looping in error', async () => {
      const st = await status('looping');
      return st.state === 'error' ? st : undefined;
    });
    assert.match(s.lastError ?? '', /tools\/list: the server handed out the same cursor twice/);
    await fetch(`${app.url}/api/v1/servers/looping`, { method: 'DELETE' });
  });

  for (const path of ['/mcp', '/mcp/paged']) {
    it(`${path}: tools/list is paginated (MCP_LIST_PAGE_SIZE) with a stable order, and an unknown cursor is -32602`, async () => {
      const headers = await legacySession(`${app.url}${path}`);
      const names: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const r = await rpc(`${app.url}${path}`, legacyRequest('tools/list', cursor === undefined ? {} : { cursor }, ++pages), headers);
        assert.equal(r.status, 200);
        const result = r.body!.result as { tools: { name: string }[]; nextCursor?: string };
        assert.ok(result.tools.length <= 50, `page of ${result.tools.length}`);
        names.push(...result.tools.map((t) => t.name));
        cursor = result.nextCursor;
      } while (cursor !== undefined && pages < 100);
      assert.equal(pages, Math.ceil(TOOL_COUNT / 50));
      assert.equal(new Set(names).size, TOOL_COUNT);
      assert.deepEqual(names, [...names].sort());

      for (const bad of ['nope', 'eyJ4IjoxfQ', Buffer.from(JSON.stringify(['prompts/list', 'a'])).toString('base64url')]) {
        const r = await rpc(`${app.url}${path}`, legacyRequest('tools/list', { cursor: bad }, 'bad'), headers);
        assert.equal(r.body?.error?.code, -32602, JSON.stringify(r.body));
        assert.match(r.body?.error?.message ?? '', /cursor/);
      }
      // Same through the SDK's serving (prompts/list is not on the fast path).
      const r = await rpc(`${app.url}${path}`, legacyRequest('prompts/list', { cursor: 'nope' }, 'p'), headers);
      assert.equal(r.body?.error?.code, -32602, JSON.stringify(r.body));
    });
  }

  it('/mcp: resource URIs inside tools/call, prompts/get and resources/read results are aggregated and readable there; /mcp/paged keeps them', async () => {
    const c = await modern('/mcp');
    try {
      const called = await c.callTool({ name: 'paged__links', arguments: {} });
      const wrapped = 'gatehouse://paged/file:///docs/a.txt';
      assert.deepEqual(called.content, [
        { type: 'text', text: 'see' },
        { type: 'resource_link', uri: wrapped, name: 'a' },
        { type: 'resource', resource: { uri: wrapped, mimeType: 'text/plain', text: 'A' } },
      ]);
      const read = await c.readResource({ uri: wrapped });
      assert.deepEqual(read.contents, [{ uri: wrapped, mimeType: 'text/plain', text: 'A' }]);
      const prompt = await c.getPrompt({ name: 'paged__with_resource' });
      assert.equal((prompt.messages[0].content as { resource: { uri: string } }).resource.uri, wrapped);
      assert.equal((prompt.messages[1].content as { uri: string }).uri, wrapped);
    } finally {
      await c.close();
    }
    const single = await modern('/mcp/paged');
    try {
      const called = await single.callTool({ name: 'links', arguments: {} });
      assert.equal((called.content as { uri?: string }[])[1].uri, 'file:///docs/a.txt');
    } finally {
      await single.close();
    }
  });

  it('passes upstream instructions through on /mcp/<server> and combines them per server on /mcp (both eras)', async () => {
    const own = 'Paged upstream: call links for resource links.';
    const single = await modern('/mcp/paged');
    const all = await modern('/mcp');
    try {
      assert.equal(single.getInstructions(), own);
      assert.match(all.getInstructions() ?? '', /^Gatehouse aggregates[^]*\n## paged\n\nPaged upstream: call links for resource links\.$/);
    } finally {
      await single.close();
      await all.close();
    }
    const init = await rpc(
      `${app.url}/mcp/paged`,
      { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } },
      { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    );
    assert.equal(init.body?.result?.instructions, own);
  });

  it('sends prompts/list_changed and resources/list_changed (only) when those change, on GET streams and listen streams', async () => {
    const headers = await legacySession(`${app.url}/mcp`);
    const stream = await fetch(`${app.url}/mcp`, { headers: { accept: 'text/event-stream', 'mcp-session-id': headers['mcp-session-id'], 'mcp-protocol-version': headers['mcp-protocol-version'] } });
    assert.equal(stream.status, 200);
    const listener = await modern('/mcp/paged');
    const seen: string[] = [];
    for (const kind of ['tools', 'prompts', 'resources'] as const) {
      listener.setNotificationHandler(`notifications/${kind}/list_changed`, () => void seen.push(kind));
    }
    const subscription = await listener.listen({ toolsListChanged: true, promptsListChanged: true, resourcesListChanged: true });
    try {
      const prompts = readStreamUntil(stream, 'notifications/prompts/list_changed');
      const call = await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'paged__add_prompt', arguments: {} }, 7), headers);
      assert.equal(call.status, 200);
      const text = await prompts;
      assert.doesNotMatch(text, /tools\/list_changed/);
      await eventually('prompts listed again', async () => {
        const r = await rpc(`${app.url}/mcp`, legacyRequest('prompts/list', {}, 8), headers);
        return (r.body?.result?.prompts as unknown[]).length === 2 ? true : undefined;
      });
      await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'paged__add_resource', arguments: {} }, 9), headers);
      await eventually('listen stream saw prompts and resources', () => (seen.includes('prompts') && seen.includes('resources') ? true : undefined), 10_000);
      assert.ok(!seen.includes('tools'), `unexpected: ${seen.join(', ')}`);
    } finally {
      await subscription.close();
      await listener.close();
      if (!stream.body?.locked) await stream.body?.cancel();
    }
  });
});
