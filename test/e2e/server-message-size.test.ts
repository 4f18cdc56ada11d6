import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { everythingOverHttp, registerConnected, toolText } from '../support/upstreams.js';

/**
 * A server's own `maxMessageBytes` overrides GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE (stdio framing)
 * and the HTTP response caps for that server only; it is validated, shown and documented in the
 * admin API like every server field.
 */

const FAULT = resolve('test/fixtures/fault-upstream.mjs');
const MiB = 1024 * 1024;

describe('per-server message size (maxMessageBytes)', () => {
  let db: TestDatabase;
  let app: TestApp;
  let http: ChildProcess;
  const clients: V1Client[] = [];

  const connect = async (server: string) => {
    const client = new V1Client({ name: 'size', version: '1' });
    await client.connect(new V1Transport(new URL(`${app.url}/mcp/${server}`)));
    clients.push(client);
    return client;
  };
  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${app.url}/api/v1${path}`, { method, headers: { 'content-type': 'application/json' }, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    return { status: res.status, body: (await res.json().catch(() => undefined)) as Record<string, unknown> };
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE: '1mb' });
    await registerConnected(app.url, { name: 'default', transport: 'stdio', command: process.execPath, args: [FAULT] });
    await registerConnected(app.url, { name: 'roomy', transport: 'stdio', command: process.execPath, args: [FAULT], maxMessageBytes: 4 * MiB });
    await registerConnected(app.url, { name: 'tight', transport: 'stdio', command: process.execPath, args: [FAULT], maxMessageBytes: 64 * 1024 });
    const everything = await everythingOverHttp('streamableHttp');
    http = everything.child;
    await registerConnected(app.url, { name: 'remote', transport: 'streamable_http', url: everything.url });
    await registerConnected(app.url, { name: 'remotetight', transport: 'streamable_http', url: everything.url, maxMessageBytes: 2048 });
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await app.shutdown('test done');
    http.kill();
    await db.drop();
  });

  it('stdio: a 2 MiB message passes on a server allowing 4 MiB, while the 1 MiB setting still holds for the others', async () => {
    const roomy = await connect('roomy');
    const result = await roomy.callTool({ name: 'fault', arguments: { kind: 'huge', bytes: 2 * MiB } });
    assert.ok(JSON.stringify(result).length > 2 * MiB - 1024, 'the whole result arrived');
    const standard = await connect('default');
    await assert.rejects(standard.callTool({ name: 'fault', arguments: { kind: 'huge', bytes: 2 * MiB } }), /server "default" sent a message of more than 1 MiB .*GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE/);
  });

  it('stdio: a server allowing 64 KiB refuses 200 KiB, naming its own maxMessageBytes', async () => {
    const tight = await connect('tight');
    await assert.rejects(tight.callTool({ name: 'fault', arguments: { kind: 'huge', bytes: 200 * 1024 } }), /server "tight" sent a message of more than 64 KiB .*the server's maxMessageBytes/);
    assert.equal(toolText(await tight.callTool({ name: 'echo', arguments: { message: 'small' } })), 'small', 'the connection stays up');
  });

  it('streamable HTTP: the server’s cap bounds its responses, naming maxMessageBytes; the same upstream without it answers', async () => {
    const message = 'x'.repeat(5000);
    const remote = await connect('remote');
    assert.equal(toolText(await remote.callTool({ name: 'echo', arguments: { message } })), `Echo: ${message}`);
    const tight = await connect('remotetight');
    const refused = await tight.callTool({ name: 'echo', arguments: { message } });
    assert.equal(refused.isError, true);
    assert.match(toolText(refused), /Upstream MCP server "remotetight" failed: .*exceeded 2048 .*the server's maxMessageBytes/);
  });

  it('is validated (400 naming the field), shown, patchable back to null, and in the OpenAPI document', async () => {
    for (const bad of [10, 2 * 1024 ** 3, 1.5, 'big']) {
      const res = await api('POST', '/servers', { name: 'bad', transport: 'stdio', command: 'x', maxMessageBytes: bad });
      assert.equal(res.status, 400, JSON.stringify(bad));
      assert.match(JSON.stringify(res.body), /maxMessageBytes.*expected an integer 1024-1073741824 \(bytes\) or null/);
    }
    assert.equal((await api('GET', '/servers/roomy')).body.maxMessageBytes, 4 * MiB);
    assert.equal((await api('GET', '/servers/default')).body.maxMessageBytes, null);
    const patched = await api('PATCH', '/servers/tight', { maxMessageBytes: null });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.maxMessageBytes, null);
    const openapi = await (await fetch(`${app.url}/api/openapi.json`)).text();
    assert.match(openapi, /"maxMessageBytes"/);
  });
});
