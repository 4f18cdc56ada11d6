import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Client, ProtocolError, SSEClientTransport, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { DescribedError, describeUpstreamError } from './error-description.js';

const SECRET = 'tok"\\é-5ec7e7';
/** Every form of SECRET that Node, fetch or the SDK might put in a message. */
const forms = [SECRET, JSON.stringify(SECRET).slice(1, -1), inspect(SECRET).slice(1, -1), encodeURIComponent(SECRET), '5ec7e7'];
const leaks = (text: string) => forms.filter((f) => text.includes(f));

/** The error a real call raises (sync throw or rejection). */
async function errorOf(run: () => unknown): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected an error');
}

const spawnError = (command: string, env?: Record<string, string>) =>
  errorOf(
    () =>
      new Promise((resolve, reject) => {
        const child = spawn(command, ['--token', SECRET], { env, stdio: 'ignore' });
        child.once('error', reject);
        child.once('spawn', () => {
          child.kill();
          resolve(undefined);
        });
      }),
  );

describe('describeUpstreamError: by code, never by the underlying message', () => {
  let dir: string;
  let server: Server;
  let url: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-describe-'));
    // Answers every request 500, echoing the Authorization header in the body (as some servers do).
    server = createServer((req, res) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`bad credentials: ${req.headers.authorization ?? ''}`));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const address = server.address();
    url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/mcp`;
  });
  after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('spawn with a NUL byte in env: ERR_INVALID_ARG_VALUE, whose message quotes the value inspect-escaped', async () => {
    const error = await spawnError(process.execPath, { TOKEN: `${SECRET}\u0000` });
    assert.ok(leaks((error as Error).message).length > 0, 'Node quotes the value (what used to reach callers)');
    const text = describeUpstreamError(error);
    assert.match(text, /^ERR_INVALID_ARG_VALUE: /);
    assert.deepEqual(leaks(text), []);
  });

  it('spawn of a missing or non-executable command: ENOENT / EACCES (spawn), no arguments', async () => {
    assert.equal(describeUpstreamError(await spawnError(join(dir, 'missing'))), 'ENOENT: no such file or directory (the command or working directory does not exist) (spawn)');
    const file = join(dir, 'not-executable');
    writeFileSync(file, '#!/bin/sh\n');
    chmodSync(file, 0o644);
    assert.match(describeUpstreamError(await spawnError(file)), /^EACCES: permission denied \(spawn\)$/);
  });

  it('fetch: a refused connection by its cause code; an invalid header value by its kind only', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const refused = await errorOf(() => fetch(`http://127.0.0.1:${port}/`, { headers: { 'x-token': SECRET.replace('é', 'e') } }));
    assert.match(describeUpstreamError(refused), /^ECONNREFUSED: connection refused/);
    const invalid = await errorOf(() => fetch(url, { headers: { authorization: `Bearer ${SECRET}\r\nx` } }));
    assert.ok(leaks((invalid as Error).message).length > 0, 'fetch quotes the header value');
    assert.equal(describeUpstreamError(invalid), 'unexpected TypeError (details withheld: they may quote configured values)');
  });

  it('refused HTTP upstreams name the refusal on every transport (was: "unexpected TypeError", "the SSE stream failed")', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as { port: number }).port;
    await new Promise((r) => closed.close(r));
    const sseClient = new Client({ name: 't', version: '1' });
    const sse = await errorOf(() => sseClient.connect(new SSEClientTransport(new URL(`http://127.0.0.1:${port}/sse`))));
    await sseClient.close().catch(() => undefined);
    assert.equal(describeUpstreamError(sse), 'ECONNREFUSED: connection refused (SSE stream)');
    const httpClient = new Client({ name: 't', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    const badPort = await errorOf(() => httpClient.connect(new StreamableHTTPClientTransport(new URL('http://127.0.0.1:1/mcp'))));
    await httpClient.close().catch(() => undefined);
    assert.match(describeUpstreamError(badPort), /: the HTTP request failed \(the port is one fetch refuses to connect to/);
  });

  it('an SDK HTTP error whose body echoes the credential: described by its status', async () => {
    const client = new Client({ name: 't', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    const error = await errorOf(() => client.connect(new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers: { authorization: `Bearer ${SECRET.replace('é', 'e')}` } } })));
    const text = describeUpstreamError(error);
    assert.match(text, /HTTP 500 Internal Server Error|ERA_NEGOTIATION_FAILED/);
    assert.ok(!text.includes('5ec7e7'), text);
    await client.close().catch(() => undefined);
  });

  it('a legacy SSE upstream answering 500 with the credential in its body: described by its status', async () => {
    const client = new Client({ name: 't', version: '1' });
    const sse = url.replace(/\/mcp$/, '/sse');
    const error = await errorOf(() => client.connect(new SSEClientTransport(new URL(sse), { requestInit: { headers: { authorization: `Bearer ${SECRET.replace('é', 'e')}` } } })));
    assert.equal(describeUpstreamError(error), 'HTTP 500 Internal Server Error (SSE stream)');
    await client.close().catch(() => undefined);
  });

  it("keeps Gatehouse's own words and the upstream's JSON-RPC errors; JSON parse errors say so", () => {
    assert.equal(describeUpstreamError(new DescribedError('process exited (code 1)')), 'process exited (code 1)');
    assert.equal(describeUpstreamError(new ProtocolError(-32602, 'Unknown tool: x\nstack')), 'upstream error -32602: Unknown tool: x');
    assert.equal(describeUpstreamError(new SyntaxError(`Unexpected token '${SECRET}'`)), 'the upstream sent text that is not valid JSON');
    assert.equal(describeUpstreamError('a string'), 'unexpected string (details withheld: they may quote configured values)');
  });
});
