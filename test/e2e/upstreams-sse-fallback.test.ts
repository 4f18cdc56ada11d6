import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually, everythingOverHttp, fixtureOverHttp, registerConnected, toolText } from '../support/upstreams.js';

/**
 * A server registered as `streamable_http` whose URL speaks only the old HTTP+SSE transport is
 * connected over SSE automatically (MCP transports spec, "Backwards Compatibility": POST
 * refused with a 4xx, then GET for an SSE stream with an `endpoint` event); its status says so.
 * When neither works, `lastError` names both causes.
 */

const OLD_SSE = resolve('test/fixtures/old-sse-upstream.mjs');

interface Status {
  state: string;
  lastError: string | null;
  transport?: string;
  fallback?: string;
}

describe('streamable HTTP → HTTP+SSE fallback', () => {
  let db: TestDatabase;
  let app: TestApp;
  const children: ChildProcess[] = [];

  const oldSse = async (env: Record<string, string> = {}) => {
    const fixture = await fixtureOverHttp(OLD_SSE, [], env);
    children.push(fixture.child);
    return `${fixture.base}/sse`;
  };
  const status = async (name: string) => ((await (await fetch(`${app.url}/api/v1/servers/${name}`)).json()) as { status: Status }).status;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
  });
  after(async () => {
    await app.shutdown('test done');
    for (const child of children) child.kill();
    await db.drop();
  });

  it('an SDK v1 SSEServerTransport server (POST answers 405) registered as streamable_http connects over SSE; v1 and v2 clients call it', async () => {
    await registerConnected(app.url, { name: 'oldsse', transport: 'streamable_http', url: await oldSse() });
    const s = await status('oldsse');
    assert.equal(s.transport, 'sse');
    assert.match(s.fallback ?? '', /streamable HTTP refused \(HTTP 405 Method Not Allowed.*\); connected over the HTTP\+SSE transport/);

    const v1 = new V1Client({ name: 'v1', version: '1' });
    await v1.connect(new V1Transport(new URL(`${app.url}/mcp`)));
    assert.equal(toolText(await v1.callTool({ name: 'oldsse__hello', arguments: {} })), 'hello over SSE');
    await v1.close();
    const v2 = new Client({ name: 'v2', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    await v2.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/oldsse`)));
    assert.equal(toolText(await v2.callTool({ name: 'hello', arguments: {} })), 'hello over SSE');
    await v2.close();
  });

  it('server-everything in SSE mode (POST answers 404) registered as streamable_http connects over SSE', async () => {
    const everything = await everythingOverHttp('sse');
    children.push(everything.child);
    await registerConnected(app.url, { name: 'evsse', transport: 'streamable_http', url: everything.url });
    const s = await status('evsse');
    assert.equal(s.transport, 'sse');
    assert.match(s.fallback ?? '', /HTTP 404/);
    const v1 = new V1Client({ name: 'v1', version: '1' });
    await v1.connect(new V1Transport(new URL(`${app.url}/mcp/evsse`)));
    assert.equal(toolText(await v1.callTool({ name: 'echo', arguments: { message: 'via sse' } })), 'Echo: via sse');
    await v1.close();
  });

  it('a real streamable-HTTP server does not fall back', async () => {
    const everything = await everythingOverHttp('streamableHttp');
    children.push(everything.child);
    await registerConnected(app.url, { name: 'evhttp', transport: 'streamable_http', url: everything.url });
    const s = await status('evhttp');
    assert.equal(s.transport, 'streamable_http');
    assert.equal(s.fallback, undefined);
  });

  it('when neither transport works, lastError names both causes', async () => {
    const url = await oldSse({ BROKEN: '1' });
    const res = await fetch(`${app.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'nowhere', transport: 'streamable_http', url }) });
    assert.equal(res.status, 201);
    const failed = await eventually('nowhere in error', async () => {
      const s = await status('nowhere');
      return s.state === 'error' ? s : undefined;
    });
    assert.match(failed.lastError ?? '', /streamable HTTP refused \(HTTP 404.*\), and the HTTP\+SSE fallback failed too \(.*404.*\)/);
    assert.equal(failed.fallback, undefined);
  });
});
