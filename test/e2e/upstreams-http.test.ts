import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HttpUpstream } from '../support/http-upstream.js';
import { registerConnected } from '../support/upstreams.js';

type Caller = { callTool(p: { name: string; arguments?: Record<string, unknown> }): Promise<unknown>; listTools(): Promise<{ tools: { name: string }[] }>; close(): Promise<void> };

/** A client of either era on `path` of the gateway. */
async function clientOn(app: TestApp, path: string, era: 'modern' | 'legacy'): Promise<Caller> {
  const url = new URL(`${app.url}${path}`);
  if (era === 'modern') {
    const client = new Client({ name: 'e2e', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    await client.connect(new StreamableHTTPClientTransport(url));
    return client as unknown as Caller;
  }
  const client = new LegacyClient({ name: 'e2e-v1', version: '1' });
  await client.connect(new LegacyTransport(url));
  return client as unknown as Caller;
}

const textOf = (result: unknown) => ((result as { content: { text: string }[] }).content[0]).text;

describe('streamable-HTTP upstreams end to end', () => {
  let db: TestDatabase;
  let app: TestApp;
  let upstream: HttpUpstream;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    upstream = await HttpUpstream.start();
    upstream.behaviour.eol = '\r\n';
    upstream.behaviour.sliceBytes = 5;
    await registerConnected(app.url, { name: 'py', transport: 'streamable_http', url: upstream.url });
  });
  after(async () => {
    await app.shutdown('test done');
    await upstream.close();
    await db.drop();
  });

  for (const era of ['modern', 'legacy'] as const) {
    it(`${era} client: calls to an upstream framing SSE with CRLF, characters split by the network, answer (was: every call failed)`, async () => {
      const client = await clientOn(app, '/mcp', era);
      try {
        const result = await client.callTool({ name: 'py__echo', arguments: { text: 'naïve 😀 façade' } });
        assert.equal(textOf(result), 'naïve 😀 façade');
      } finally {
        await client.close();
      }
    });
  }

  it('a restarted upstream that forgot its session: the call is retried on a new session, status says so', async () => {
    upstream.forgetSessions();
    const client = await clientOn(app, '/mcp/py', 'modern');
    try {
      assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { text: 'again' } })), 'again');
    } finally {
      await client.close();
    }
    const view = (await (await fetch(`${app.url}/api/v1/servers/py`)).json()) as { status: { state: string; lastRecovery: string | null } };
    assert.equal(view.status.state, 'connected');
    assert.match(view.status.lastRecovery ?? '', /HTTP 404.*re-initialized the session and retried/);
  });

  for (const path of ['/mcp/', '/mcp/py/', '/mcp/?x=1']) {
    it(`serves ${path} like the path without its trailing slash`, async () => {
      for (const era of ['modern', 'legacy'] as const) {
        const client = await clientOn(app, path, era);
        try {
          const names = (await client.listTools()).tools.map((t) => t.name);
          assert.ok(names.includes(path.startsWith('/mcp/py') ? 'echo' : 'py__echo'), `${era}: ${names.join(', ')}`);
        } finally {
          await client.close();
        }
      }
    });
  }
});
