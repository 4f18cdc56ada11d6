import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually } from '../support/upstreams.js';

const FIXTURE = resolve('test/fixtures/odd-names-upstream.mjs');
const ORIGINALS = ['files/read', 'search docs', 'db:query', 'naïve', `long_${'n'.repeat(65)}`, 'plain'];
/** MCP spec 2025-11-25, server/tools, "Tool Names". */
const VALID = /^[A-Za-z0-9_.-]{1,128}$/;

describe('exposed names: upstream names that break the MCP name rule', () => {
  let db: TestDatabase;
  let app: TestApp;
  const client = async (path: string) => {
    const c = new Client({ name: 'names-test', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await c.connect(new StreamableHTTPClientTransport(new URL(`${app.url}${path}`)));
    return c;
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'odd', transport: 'stdio', command: process.execPath, args: [FIXTURE] }),
    });
    assert.equal(res.status, 201, await res.text());
    await eventually('odd connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/odd`)).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  for (const path of ['/mcp', '/mcp/odd']) {
    it(`${path}: tools/list shows only valid names and tools/call reaches the upstream under the original name`, async () => {
      const c = await client(path);
      try {
        const { tools } = await c.listTools();
        assert.equal(tools.length, ORIGINALS.length);
        for (const tool of tools) assert.match(tool.name, VALID, tool.name);
        const called: string[] = [];
        for (const tool of tools) {
          const result = await c.callTool({ name: tool.name, arguments: {} });
          assert.notEqual(result.isError, true, JSON.stringify(result));
          called.push((result.content as { text: string }[])[0].text.replace(/^called /, ''));
        }
        assert.deepEqual(called.sort(), [...ORIGINALS].sort());
        const { prompts } = await c.listPrompts();
        assert.match(prompts[0].name, VALID);
        const got = await c.getPrompt({ name: prompts[0].name });
        assert.deepEqual(got.messages[0].content, { type: 'text', text: 'prompt sum up' });
      } finally {
        await c.close();
      }
    });
  }

  it('legacy session (fast path): the same valid names list and call', async () => {
    const c = new LegacyClient({ name: 'names-legacy', version: '1' });
    await c.connect(new LegacyTransport(new URL(`${app.url}/mcp`)));
    try {
      const { tools } = await c.listTools();
      const fileRead = tools.find((t) => t.title === 'files/read');
      assert.ok(fileRead, JSON.stringify(tools.map((t) => [t.name, t.title])));
      assert.match(fileRead.name, /^odd__files_read_[0-9a-f]{8}$/);
      const result = await c.callTool({ name: fileRead.name, arguments: {} });
      assert.deepEqual(result.content, [{ type: 'text', text: 'called files/read' }]);
    } finally {
      await c.close();
    }
  });

  it('logs once per name that it renamed or that is over 64 characters', () => {
    const warnings = app.logs.lines.filter((l) => l.level === 'warn' && typeof l.code === 'string');
    const renamed = warnings.filter((w) => w.code === 'renamed').map((w) => w.original);
    // Each of the four is renamed once on /mcp and once on /mcp/odd (different exposed names), the prompt too.
    for (const original of ['files/read', 'search docs', 'db:query', 'naïve', 'sum up']) {
      assert.equal(renamed.filter((o) => o === original).length, 2, `${original}: ${JSON.stringify(renamed)}`);
    }
    const long = warnings.filter((w) => w.code === 'long_name').map((w) => w.name);
    assert.deepEqual(long.sort(), [`long_${'n'.repeat(65)}`, `odd__long_${'n'.repeat(65)}`]);
  });

  it('shows admins the renamed and over-long names in GET /api/v1/servers/:name/tools', async () => {
    const res = await fetch(`${app.url}/api/v1/servers/odd/tools`);
    assert.equal(res.status, 200);
    const { nameWarnings } = (await res.json()) as { nameWarnings: { code: string; original: string; name: string }[] };
    const renamed = nameWarnings.filter((w) => w.code === 'renamed').map((w) => w.original);
    assert.ok(renamed.includes('files/read') && renamed.includes('naïve'), JSON.stringify(renamed));
    assert.ok(nameWarnings.some((w) => w.code === 'long_name' && w.name === `odd__long_${'n'.repeat(65)}`));
  });

  it('policies match the upstream names, for listing as for calling', async () => {
    const res = await fetch(`${app.url}/api/v1/policies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['odd__files/read'] }),
    });
    assert.equal(res.status, 201, await res.text());
    const c = await client('/mcp');
    try {
      const names = await eventually('the policy applied', async () => {
        const { tools } = await c.listTools();
        return tools.length === ORIGINALS.length - 1 ? tools.map((t) => t.name) : undefined;
      });
      assert.ok(!names.some((n) => n.startsWith('odd__files_read')), names.join(', '));
    } finally {
      await c.close();
    }
  });
});
