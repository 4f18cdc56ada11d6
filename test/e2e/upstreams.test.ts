import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { freePort, spawnGatehouse, stopAllGatehouses, waitForStatus } from '../support/process.js';
import { EVERYTHING, eventually, everythingOverHttp, processesWith } from '../support/upstreams.js';


interface ServerView {
  name: string;
  transport: string;
  env: Record<string, string>;
  headers: Record<string, string>;
  source: string;
  status: { state: string; lastError: string | null; toolCount: number; updatedAt: string };
}

interface ErrorBody {
  error: { code: string; message: string; requestId: string };
}

describe('upstream servers: registry, admin API, connections', () => {
  let db: TestDatabase;
  let app: TestApp;
  const children: ChildProcess[] = [];
  const marker = `GH_TEST_MARKER_${randomUUID().replaceAll('-', '')}`;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${app.url}/api/v1/servers${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as unknown };
  };
  const stdioEverything = (name: string, extra: Record<string, unknown> = {}) => ({
    name,
    transport: 'stdio',
    command: process.execPath,
    args: [EVERYTHING, 'stdio'],
    env: { [marker]: '1' },
    ...extra,
  });
  const connected = (name: string, on: TestApp = app) =>
    eventually(`${name} connected`, async () => {
      const res = await fetch(`${on.url}/api/v1/servers/${name}`);
      const view = (await res.json()) as ServerView;
      return view.status?.state === 'connected' ? view : undefined;
    });

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
  });
  after(async () => {
    await stopAllGatehouses();
    await app.shutdown('test done');
    for (const child of children) child.kill();
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it('rejects bad input with 400 naming the field', async () => {
    const cases: [unknown, RegExp][] = [
      [{ name: 'Bad Name', transport: 'stdio', command: 'x' }, /^name: expected a slug \[a-z0-9\]\[a-z0-9-\]\{0,62\}, got "Bad Name"$/],
      [{ name: 'a', transport: 'stdio' }, /^command: required when transport is stdio$/],
      [{ name: 'a', transport: 'streamable_http' }, /^url: required when transport is streamable_http$/],
      [{ name: 'a', transport: 'ftp', url: 'http://x' }, /^transport: expected one of stdio, streamable_http, sse, got "ftp"$/],
      [{ name: 'a', transport: 'sse', url: 'file:///etc/passwd' }, /^url: expected an http or https URL/],
      [{ name: 'a', transport: 'stdio', command: 'x', bogus: 1 }, /^bogus: is not a known field$/],
      [{ name: 'a', transport: 'stdio', command: 'x', timeoutMs: 5 }, /^timeoutMs: expected an integer 100-3600000/],
      [{ name: 'a', transport: 'stdio', command: 'x', env: { 'BAD-NAME': 'v' } }, /^env\.BAD-NAME: expected environment variable names/],
      [{ name: 'a', transport: 'sse', url: 'http://x', headers: { Host: 'evil' } }, /^headers\.Host: is set by Gatehouse/],
      [{ name: 'a', transport: 'stdio', command: 'x', toolFilter: { allow: ['ok*', 'bad glob!'] } }, /^toolFilter\.allow\.1: expected a tool-name glob/],
    ];
    for (const [body, message] of cases) {
      const res = await api('POST', '', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal((res.body as ErrorBody).error.code, 'validation_failed');
      assert.match((res.body as ErrorBody).error.message, message);
    }
    assert.equal((await api('GET', '')).body && ((await api('GET', '')).body as { items: unknown[] }).items.length, 0, 'nothing was written');
  });

  it('registers a stdio server, connects to it and lists its own tools', async () => {
    const created = await api('POST', '', stdioEverything('everything', { description: 'reference server' }));
    assert.equal(created.status, 201);
    const view = created.body as ServerView;
    assert.equal(view.name, 'everything');
    assert.ok(['connecting', 'connected'].includes(view.status.state));

    const live = await connected('everything');
    assert.ok(live.status.toolCount > 5);
    const tools = (await api('GET', '/everything/tools')).body as { tools: { name: string; inputSchema: unknown }[] };
    const echo = tools.tools.find((t) => t.name === 'echo');
    assert.ok(echo, 'the upstream echo tool, under its own name');
    assert.deepEqual(Object.keys((echo.inputSchema as { properties: object }).properties), ['message']);

    const list = (await api('GET', '')).body as { items: ServerView[] };
    assert.deepEqual(
      list.items.map((s) => s.name),
      ['everything'],
    );
  });

  it('answers 409 for a duplicate name and 404 for an unknown server', async () => {
    const dup = await api('POST', '', stdioEverything('everything'));
    assert.equal(dup.status, 409);
    assert.equal((dup.body as ErrorBody).error.code, 'conflict');
    assert.match((dup.body as ErrorBody).error.message, /^name: a server named "everything" already exists$/);
    for (const [method, path] of [['GET', '/nope'], ['PATCH', '/nope'], ['DELETE', '/nope'], ['POST', '/nope/enable'], ['GET', '/nope/tools']] as const) {
      const res = await api(method, path, method === 'PATCH' ? {} : undefined);
      assert.equal(res.status, 404, `${method} ${path}`);
      assert.equal((res.body as ErrorBody).error.code, 'not_found');
    }
  });

  it('never shows credential values back, and a PATCH that echoes the mask keeps them', async () => {
    const token = `tok-${randomUUID()}`;
    const res = await api('POST', '', stdioEverything('with-secret', { env: { [marker]: '1', API_TOKEN: token, REGION: 'eu' }, enabled: false }));
    assert.equal(res.status, 201);
    assert.ok(!JSON.stringify(res.body).includes(token));
    const view = (await api('GET', '/with-secret')).body as ServerView;
    assert.equal(view.env.API_TOKEN, '[REDACTED]');
    assert.equal(view.env.REGION, 'eu');
    const patched = await api('PATCH', '/with-secret', { env: { ...view.env, REGION: 'us' } });
    assert.equal(patched.status, 200);
    const [row] = await db.query<{ env: Record<string, string> }>("SELECT env FROM upstream_servers WHERE name = 'with-secret'");
    assert.equal(row.env.API_TOKEN, token, 'the stored token survived the round trip');
    assert.equal(row.env.REGION, 'us');
    assert.ok(!app.logs.raw.includes(token), 'the token is not in the logs');
    assert.equal((await api('DELETE', '/with-secret')).status, 204);
  });

  it('disable stops the process, enable starts it again, delete removes it', async () => {
    await connected('everything');
    assert.ok(processesWith(marker).length > 0);
    const disabled = await api('POST', '/everything/disable');
    assert.equal(disabled.status, 200);
    assert.equal((disabled.body as ServerView).status.state, 'disabled');
    await eventually('process gone after disable', () => (processesWith(marker).length === 0 ? true : undefined));

    assert.equal((await api('POST', '/everything/enable')).status, 200);
    await connected('everything');

    assert.equal((await api('DELETE', '/everything')).status, 204);
    assert.equal((await api('GET', '/everything')).status, 404);
    await eventually('process gone after delete', () => (processesWith(marker).length === 0 ? true : undefined));
  });

  it('restarts a stdio server that crashed, with backoff', async () => {
    assert.equal((await api('POST', '', stdioEverything('crashy'))).status, 201);
    await connected('crashy');
    const [pid] = processesWith(marker);
    assert.ok(pid, 'the upstream process runs');
    process.kill(pid, 'SIGKILL');
    const failed = await eventually('error state after the crash', async () => {
      const v = (await api('GET', '/crashy')).body as ServerView;
      return v.status.state === 'error' ? v : undefined;
    });
    assert.match(failed.status.lastError ?? '', /exited|closed/);
    const back = await connected('crashy');
    assert.ok(back.status.toolCount > 5);
    const [newPid] = processesWith(marker);
    assert.ok(newPid && newPid !== pid, 'a new process serves it');
    assert.equal((await api('DELETE', '/crashy')).status, 204);
    await eventually('process gone after delete', () => (processesWith(marker).length === 0 ? true : undefined));
  });

  it('connects over streamable HTTP and legacy SSE', async () => {
    for (const [mode, transport] of [
      ['streamableHttp', 'streamable_http'],
      ['sse', 'sse'],
    ] as const) {
      const upstream = await everythingOverHttp(mode);
      children.push(upstream.child);
      const name = `http-${transport.replace('_', '-')}`;
      assert.equal((await api('POST', '', { name, transport, url: upstream.url, headers: { 'X-Team': 'a' } })).status, 201);
      const live = await connected(name);
      assert.ok(live.status.toolCount > 5, `${transport}: tools listed`);
      assert.equal((await api('DELETE', `/${name}`)).status, 204);
    }
  });

  it('reports an unreachable upstream as an error naming the problem, without hanging', async () => {
    const port = await freePort();
    await api('POST', '', { name: 'down', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp`, timeoutMs: 2000 });
    const view = await eventually('error state', async () => {
      const v = (await api('GET', '/down')).body as ServerView;
      return v.status.state === 'error' ? v : undefined;
    });
    assert.ok(view.status.lastError && view.status.lastError.length > 0);
    assert.equal(view.status.toolCount, 0);
    await api('DELETE', '/down');
  });

  it('a change on one replica takes effect on another without restart', async () => {
    const other = await startTestApp(db.url);
    try {
      assert.equal((await api('POST', '', stdioEverything('shared'))).status, 201);
      const onOther = await connected('shared', other);
      assert.ok(onOther.status.toolCount > 5, 'replica B connected to the server created on A');
      assert.equal((await api('POST', '/shared/disable')).status, 200);
      await eventually('disabled on B', async () => {
        const v = (await (await fetch(`${other.url}/api/v1/servers/shared`)).json()) as ServerView;
        return v.status.state === 'disabled' ? true : undefined;
      });
      assert.equal((await api('DELETE', '/shared')).status, 204);
    } finally {
      await other.shutdown('test');
    }
  });

  it('parks an idle stdio server after GATEHOUSE_STDIO_IDLE_TTL and restarts it on the next call', async () => {
    // Its own database: replicas on the shared one would start the same server too.
    const own = await createTestDatabase();
    const idle = await startTestApp(own.url, { GATEHOUSE_STDIO_IDLE_TTL: '700' });
    const idleMarker = `GH_IDLE_${randomUUID().replaceAll('-', '')}`;
    try {
      const created = await fetch(`${idle.url}/api/v1/servers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'sleepy', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [idleMarker]: '1' } }),
      });
      assert.equal(created.status, 201);
      const status = async () => ((await (await fetch(`${idle.url}/api/v1/servers/sleepy`)).json()) as ServerView).status;
      // Under load the 700 ms connected window may pass between two polls: either state shows it started.
      await eventually('started', async () => (['connected', 'idle'].includes((await status()).state) ? true : undefined));
      await eventually('parked', async () => ((await status()).state === 'idle' ? true : undefined), 5_000);
      await eventually('process stopped', () => (processesWith(idleMarker).length === 0 ? true : undefined));
      assert.ok((await status()).toolCount > 5, 'its tools stay listed while parked');

      const init = await fetch(`${idle.url}/mcp/sleepy`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } }),
      });
      await init.text();
      const call = await fetch(`${idle.url}/mcp/sleepy`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-06-18' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { message: 'awake' } } }),
      });
      assert.match(await call.text(), /Echo: awake/, 'the call woke the server and was answered');
      assert.equal((await status()).state, 'connected');
      assert.equal(processesWith(idleMarker).length, 1);
    } finally {
      await idle.shutdown('test');
      await own.drop();
    }
    assert.deepEqual(processesWith(idleMarker), []);
  });

  it('never logs or shows back the values it gave an upstream, even when the upstream prints them', async () => {
    // A real process with debug logs: everything it writes is captured.
    const own = await createTestDatabase();
    const verbose = await spawnGatehouse({ DATABASE_URL: own.url, LOG_LEVEL: 'debug' });
    await waitForStatus(`${verbose.url}/readyz`, 200);
    const token = `tok-${randomUUID()}`;
    try {
      const fixture = resolve('test/fixtures/slow-upstream.mjs');
      for (const [name, env] of [
        ['chatty', { API_TOKEN: token, CANCEL_LOG: '/dev/null' }],
        ['crashing', { CRASH_WITH_TOKEN: token }],
      ] as const) {
        const res = await fetch(`${verbose.url}/api/v1/servers`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ name, transport: 'stdio', command: process.execPath, args: [fixture], env }),
        });
        assert.equal(res.status, 201);
      }
      const stderrLines = () => verbose.logs().filter((l) => l.msg === 'upstream stderr').map((l) => String(l.stderr));
      await eventually('both servers wrote to stderr', () =>
        stderrLines().some((l) => l.startsWith('starting with token')) && stderrLines().some((l) => l.startsWith('fatal: token')) ? true : undefined,
      );
      const crashing = await eventually('crashing reports an error', async () => {
        const v = (await (await fetch(`${verbose.url}/api/v1/servers/crashing`)).json()) as ServerView;
        return v.status.lastError ? v : undefined;
      });
      const seen = `${verbose.stdout()}${verbose.stderr()}${JSON.stringify(crashing)}${JSON.stringify(await (await fetch(`${verbose.url}/api/v1/servers`)).json())}`;
      assert.ok(!seen.includes(token), 'the token appears in no log line and no API response');
      assert.ok(stderrLines().includes('starting with token [REDACTED]'));
    } finally {
      await verbose.stop();
      await own.drop();
    }
  });

  it('publishes an OpenAPI document of the servers API at /api/openapi.json and a UI at /api/docs', async () => {
    const doc = (await (await fetch(`${app.url}/api/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown>; required: string[] } }> } }>>;
    };
    assert.deepEqual(Object.keys(doc.paths).filter((p) => p.startsWith('/api/v1/servers')).sort(), [
      '/api/v1/servers',
      '/api/v1/servers/{name}',
      '/api/v1/servers/{name}/disable',
      '/api/v1/servers/{name}/enable',
      '/api/v1/servers/{name}/logs',
      '/api/v1/servers/{name}/tools',
      '/api/v1/servers/{server}/connection',
      '/api/v1/servers/{server}/secrets',
      '/api/v1/servers/{server}/secrets/{name}',
    ]);
    const create = doc.paths['/api/v1/servers'].post.requestBody!.content['application/json'].schema;
    assert.deepEqual(create.required.sort(), ['name', 'transport']);
    assert.ok('toolFilter' in create.properties);
    const ui = await fetch(`${app.url}/api/docs`);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /swagger-ui/i);
  });

  it('upserts servers declared in GATEHOUSE_SERVERS_FILE and refuses a bad file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-servers-'));
    const file = join(dir, 'servers.yaml');
    writeFileSync(file, `servers:\n  - name: from-file\n    transport: stdio\n    command: ${JSON.stringify(process.execPath)}\n    args: [${JSON.stringify(EVERYTHING)}, stdio]\n    env: { ${marker}: "1" }\n`);
    const withFile = await startTestApp(db.url, { GATEHOUSE_SERVERS_FILE: file });
    try {
      const view = await connected('from-file', withFile);
      assert.equal(view.source, 'file');
    } finally {
      await withFile.shutdown('test');
    }

    writeFileSync(file, 'servers:\n  - name: Bad_Name\n    transport: stdio\n');
    await assert.rejects(startTestApp(db.url, { GATEHOUSE_SERVERS_FILE: file }), (error: Error) => {
      assert.match(error.message, /servers\[0\]\.name: expected a slug/);
      assert.match(error.message, /servers\[0\]\.command: required when transport is stdio/);
      return true;
    });
  });
});
