import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport, type CallToolResult } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING_STDIO, eventually, processesWith, registerConnected } from '../support/upstreams.js';

const FAULT = resolve('test/fixtures/fault-upstream.mjs');
const ECHO = resolve('test/fixtures/stderr-echo-upstream.mjs');

interface ServerView {
  status: { state: string; lastError: string | null };
}

/**
 * Issue 11, "nothing from an upstream can take Gatehouse down", stdio side: an upstream that
 * writes garbage, truncated, huge or endless frames, invalid UTF-8, floods, non-JSON-RPC JSON
 * or answers to unknown ids, closes its stdout or exits, leaves the gateway running and other
 * servers' calls unaffected; every failure says why, at once.
 */
describe('upstream faults (stdio)', () => {
  let db: TestDatabase;
  let app: TestApp;
  const marker = `GH_FAULT_${randomUUID().replaceAll('-', '')}`;
  const clients: Client[] = [];

  const view = async (name: string) => (await (await fetch(`${app.url}/api/v1/servers/${name}`)).json()) as ServerView;
  const connect = async (server: string) => {
    const client = new Client({ name: 'faults', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/${server}`)));
    clients.push(client);
    return client;
  };
  const fault = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [FAULT],
    env: { [marker]: name },
    timeoutMs: 60_000,
    ...extra,
  });
  const textOf = (result: unknown) => ((result as CallToolResult).content[0] as { text: string }).text;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE: '1mb' });
    await registerConnected(app.url, { ...EVERYTHING_STDIO, env: { [marker]: 'everything' } });
    await registerConnected(app.url, fault('fuzz'));
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => undefined)));
    await app.shutdown('test done');
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it('survives every malformed frame kind; the server keeps answering, other servers too', async () => {
    const client = await connect('fuzz');
    const other = await connect('everything');
    for (const kind of ['garbage', 'truncated', 'split', 'invalid-utf8', 'non-jsonrpc', 'unknown-id', 'huge-notice']) {
      const result = await client.callTool({ name: 'fault', arguments: { kind, bytes: 2 * 1024 * 1024 } });
      assert.equal(textOf(result), `survived ${kind}`, kind);
      assert.equal(textOf(await other.callTool({ name: 'echo', arguments: { message: kind } })), `Echo: ${kind}`);
    }
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { message: 'still here' } })), 'still here');
    assert.equal((await view('fuzz')).status.state, 'connected');
  });

  it('a notification flood neither stalls the call nor other servers', async () => {
    const client = await connect('fuzz');
    const other = await connect('everything');
    const floodStarted = Date.now();
    // notifications/message only: 2,000 progress notifications forwarded to this (in-process)
    // client took ~6 s on a loaded machine — the progress path's cost, measured, not this test's subject.
    const flood = client.callTool({ name: 'fault', arguments: { kind: 'flood', count: 2_000 } });
    assert.equal(textOf(await client.callTool({ name: 'fault', arguments: { kind: 'flood', count: 100 } }, { onprogress: () => undefined })), 'survived flood');
    const started = Date.now();
    assert.equal(textOf(await other.callTool({ name: 'echo', arguments: { message: 'during the flood' } })), 'Echo: during the flood');
    const echoMs = Date.now() - started;
    assert.equal(textOf(await flood), 'survived flood');
    const floodMs = Date.now() - floodStarted;
    assert.ok(echoMs < 5_000, `the other server answered during the flood (${echoMs} ms; the flood took ${floodMs} ms)`);
  });

  it('a message over GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE fails its call at once, naming the server and the limit (was: an uncaught exception exiting the gateway past 10 MiB)', async () => {
    const client = await connect('fuzz');
    for (const kind of ['huge', 'huge-head']) {
      const started = Date.now();
      await assert.rejects(client.callTool({ name: 'fault', arguments: { kind, bytes: 12 * 1024 * 1024 } }), (error: Error) => {
        assert.match(error.message, /server "fuzz" sent a message of more than 1 MiB .*GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE/);
        return true;
      });
      assert.ok(Date.now() - started < 20_000, `${kind}: failed at once, not at the 60 s timeout`);
    }
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { message: 'after huge' } })), 'after huge', 'the connection stays up');
  });

  it('a tools/list over the limit leaves the server in error with the limit named, and the gateway up', async () => {
    const res = await fetch(`${app.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(fault('biglist', { env: { [marker]: 'biglist', HUGE_LIST_BYTES: String(12 * 1024 * 1024) } })) });
    assert.equal(res.status, 201);
    const failed = await eventually('biglist in error', async () => ((await view('biglist')).status.state === 'error' ? await view('biglist') : undefined));
    assert.match(failed.status.lastError ?? '', /server "biglist" sent a message of more than 1 MiB/);
    const other = await connect('everything');
    assert.equal(textOf(await other.callTool({ name: 'echo', arguments: { message: 'fine' } })), 'Echo: fine');
    assert.equal((await fetch(`${app.url}/api/v1/servers/biglist`, { method: 'DELETE' })).status, 204);
  });

  it('a server that closes its stdout but keeps running: its call fails at once, the process is killed and restarted', async () => {
    await registerConnected(app.url, fault('mute'));
    const client = await connect('mute');
    const started = Date.now();
    const result = (await client.callTool({ name: 'fault', arguments: { kind: 'close-stdout' } }));
    assert.equal(result.isError, true);
    assert.match(textOf(result), /closed its stdout/);
    assert.ok(Date.now() - started < 10_000, 'failed at once, not at the 60 s timeout');
    assert.match((await view('mute')).status.lastError ?? '', /process closed its stdout but kept running \(killed\); last stderr: "fault upstream starting" \| "closing stdout now"$/);
    await eventually('mute reconnected', async () => ((await view('mute')).status.state === 'connected' ? true : undefined));
    assert.equal(processesWith(`${marker}=mute`).length, 1, 'the muted process was killed: one process, the new one');
    assert.equal(textOf(await client.callTool({ name: 'echo', arguments: { message: 'back' } })), 'back');
  });

  it('a process that exits: status.lastError has its exit code and last stderr lines', async () => {
    await registerConnected(app.url, fault('quitter'));
    const client = await connect('quitter');
    const result = (await client.callTool({ name: 'fault', arguments: { kind: 'exit' } }));
    assert.equal(result.isError, true);
    const status = await eventually('quitter failed', async () => ((await view('quitter')).status.lastError ? (await view('quitter')).status : undefined));
    assert.match(status.lastError ?? '', /^process exited \(code 7\); last stderr: "fault upstream starting" \| "fatal: the fault upstream gives up"$/);
  });

  it('GET /api/v1/servers/:name/logs: stderr, notifications and events, masked, newest last; 404 and 400 as JSON', async () => {
    const token = `tok-${randomUUID()}`;
    await registerConnected(app.url, { name: 'chatty', transport: 'stdio', command: process.execPath, args: [ECHO], env: { [marker]: 'chatty', API_TOKEN: token, ECHO_VARS: 'API_TOKEN' } });
    await (await connect('fuzz')).callTool({ name: 'fault', arguments: { kind: 'flood', count: 3 } });
    await (await connect('fuzz')).callTool({ name: 'fault', arguments: { kind: 'garbage' } });
    const logs = async (name: string, query = '') => {
      const res = await fetch(`${app.url}/api/v1/servers/${name}/logs${query}`);
      return { status: res.status, body: (await res.json()) as { server: string; items: { at: string; source: string; level: string; text: string }[]; error?: { code: string; message: string } } };
    };
    const chatty = await eventually('chatty stderr in its log', async () => {
      const got = await logs('chatty');
      return got.body.items.filter((i) => i.source === 'stderr').length >= 6 ? got : undefined;
    });
    assert.equal(chatty.status, 200);
    assert.ok(!JSON.stringify(chatty.body).includes(token), 'the token is masked');
    assert.ok(!JSON.stringify(chatty.body).includes(Buffer.from(token).toString('base64')), 'in every encoding');
    assert.ok(chatty.body.items.some((i) => i.source === 'event' && /^connected \(protocol /.test(i.text)));
    const fuzz = (await logs('fuzz', '?limit=500')).body.items;
    assert.deepEqual(fuzz.filter((i) => i.source === 'notification').slice(-3).map((i) => i.text), ['flood 0', 'flood 1', 'flood 2']);
    assert.ok(fuzz.some((i) => i.source === 'event' && i.level === 'warning' && /not JSON/.test(i.text)), 'the garbage lines are noted');
    assert.ok(fuzz.some((i) => /sent a message of more than 1 MiB/.test(i.text)), 'so is the oversized message');
    const times = fuzz.map((i) => i.at);
    assert.deepEqual([...times].sort(), times, 'newest last');
    assert.equal((await logs('fuzz', '?limit=2')).body.items.length, 2);
    const unknown = await logs('nope');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error?.code, 'not_found');
    const bad = await logs('fuzz', '?limit=0');
    assert.equal(bad.status, 400);
    assert.match(bad.body.error?.message ?? '', /^limit: expected an integer 1-500/);
  });
});

describe('servers that are starting', () => {
  let db: TestDatabase;
  let app: TestApp;
  const marker = `GH_START_${randomUUID().replaceAll('-', '')}`;
  const sleepy = (name: string, delayMs: number) => ({ name, transport: 'stdio', command: process.execPath, args: [FAULT], env: { [marker]: name, START_DELAY_MS: String(delayMs) } });
  const register = async (on: TestApp, server: object) =>
    assert.equal((await fetch(`${on.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(server) })).status, 201);

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it('a call to a server on its first connection attempt waits for it, or answers "server X is starting" (was: "Unknown tool")', async () => {
    await register(app, sleepy('soon', 1_000));
    await register(app, sleepy('late', 25_000));
    const soon = new Client({ name: 'starting', version: '1' });
    await soon.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/soon`)));
    const late = new Client({ name: 'starting', version: '1' });
    await late.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/late`)));
    try {
      const answered = (await soon.callTool({ name: 'echo', arguments: { message: 'waited' } }));
      assert.equal((answered.content[0] as { text: string }).text, 'waited', 'the call waited for the start');
      const started = Date.now();
      await assert.rejects(late.callTool({ name: 'echo', arguments: { message: 'x' } }), /MCP server "late" is starting; try again shortly/);
      assert.ok(Date.now() - started < 15_000, 'the wait is bounded');
    } finally {
      await Promise.all([soon.close(), late.close()]);
    }
  });

  it('/readyz waits for enabled servers\' first connection attempt, bounded by GATEHOUSE_READY_UPSTREAMS_TIMEOUT', async () => {
    const second = await startTestApp(db.url, { GATEHOUSE_READY_UPSTREAMS_TIMEOUT: '3000' });
    try {
      const first = await fetch(`${second.url}/readyz`);
      const body = (await first.json()) as { checks: Record<string, string>; reasons?: Record<string, string> };
      assert.equal(first.status, 503);
      assert.equal(body.checks.upstreams, 'pending');
      assert.match(body.reasons?.upstreams ?? '', /waiting for the first connection attempt of .*late/);
      await eventually('ready after the bounded wait', async () => ((await fetch(`${second.url}/readyz`)).status === 200 ? true : undefined), 15_000);
    } finally {
      await second.shutdown('test done');
    }
  });
});
