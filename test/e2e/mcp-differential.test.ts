import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, eventually, everythingOverHttp } from '../support/upstreams.js';
import { RecordingHook, RecordingHookModule, legacyRequest, legacySession, modernRequest, rpc } from '../support/mcp-raw.js';

interface Case {
  title: string;
  path?: string;
  method: string;
  params?: Record<string, unknown>;
  /** Whether the fast path may take it (else both replicas serve it through the SDK). */
  fast: boolean;
  /** Modern era only / legacy era only. */
  only?: 'legacy' | 'modern';
  /** The SDK refuses it before any handler runs (invalid params, unknown method). */
  invalid?: true;
}

/** Requests answered by both paths; `fast` says which the fast path takes (checked through the hook). */
const CASES: Case[] = [
  { title: 'ping', method: 'ping', fast: true, only: 'legacy' },
  { title: 'ping (not a 2026-07-28 method: 404 -32601)', method: 'ping', fast: false, only: 'modern', invalid: true },
  { title: 'tools/list, filtered by policy', method: 'tools/list', fast: true },
  { title: 'tools/call', method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'same' } }, fast: true },
  { title: 'tools/call without arguments', method: 'tools/call', params: { name: 'everything__get-env' }, fast: true },
  { title: 'unknown tool', method: 'tools/call', params: { name: 'everything__nope', arguments: {} }, fast: true },
  { title: 'denied by policy', method: 'tools/call', params: { name: 'everything__get-sum', arguments: { a: 1, b: 2 } }, fast: true },
  { title: 'upstream rejects the arguments', method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 42 } }, fast: true },
  { title: 'upstream down', method: 'tools/call', params: { name: 'remote__echo', arguments: { message: 'x' } }, fast: true },
  { title: 'bad params: name not a string', method: 'tools/call', params: { name: 7 }, fast: false, invalid: true },
  { title: 'bad params: arguments not an object', method: 'tools/call', params: { name: 'everything__echo', arguments: 'x' }, fast: false, invalid: true },
  { title: 'bad params: arguments an array', method: 'tools/call', params: { name: 'everything__echo', arguments: ['m'] }, fast: false, invalid: true },
  { title: 'bad params: _meta not an object', method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'm' }, _meta: 'x' }, fast: false, invalid: true, only: 'legacy' },
  { title: 'progress token (streams: SDK)', method: 'tools/call', params: { name: 'everything__echo', arguments: { message: 'p' }, _meta: { progressToken: 'p1' } }, fast: false },
  { title: '/mcp/<server> tools/list', path: '/mcp/everything', method: 'tools/list', fast: true },
  { title: '/mcp/<server> tools/call', path: '/mcp/everything', method: 'tools/call', params: { name: 'echo', arguments: { message: 'single' } }, fast: true },
  { title: 'prompts/list (SDK on both)', method: 'prompts/list', fast: false },
  // A tool with a non-object outputSchema: the SDK wraps it for 2025-era clients.
  { title: 'tools/list with a non-object outputSchema', path: '/mcp/arrays', method: 'tools/list', fast: true },
  { title: 'tools/call with array structuredContent', path: '/mcp/arrays', method: 'tools/call', params: { name: 'letters', arguments: { word: 'abc' } }, fast: true },
];

/**
 * The fast path promises answers identical to the SDK's. Two replicas on one database, one with
 * MCP_FAST_PATH=false, get the same requests of both eras; every answer (status, JSON-RPC
 * result or error, code, message, data) must be equal, and a hook proves which path served it.
 */
describe('fast path and SDK path give the same answers', () => {
  let db: TestDatabase;
  let fast: TestApp;
  let sdk: TestApp;
  let upstream: ChildProcess;

  before(async () => {
    db = await createTestDatabase();
    fast = await startTestApp(db.url, {}, { imports: [RecordingHookModule] });
    sdk = await startTestApp(db.url, { MCP_FAST_PATH: 'false' }, { imports: [RecordingHookModule] });
    const http = await everythingOverHttp('streamableHttp');
    upstream = http.child;
    for (const body of [
      { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] },
      { name: 'remote', transport: 'streamable_http', url: http.url, toolFilter: { allow: ['echo'] } },
      { name: 'arrays', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/array-output-upstream.mjs')] },
    ]) {
      const res = await fetch(`${fast.url}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      assert.equal(res.status, 201, await res.text());
    }
    const policy = await fetch(`${fast.url}/api/v1/policies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['everything__get-sum'], description: 'differential' }),
    });
    assert.equal(policy.status, 201);
    for (const app of [fast, sdk]) {
      for (const name of ['everything', 'remote', 'arrays']) {
        await eventually(`${name} connected`, async () => {
          const v = (await (await fetch(`${app.url}/api/v1/servers/${name}`)).json()) as { status: { state: string } };
          return v.status.state === 'connected' ? true : undefined;
        });
      }
      // The policy reached both replicas: the denied tool is gone from their lists.
      await eventually('policy loaded', async () => {
        const session = await legacySession(`${app.url}/mcp`);
        const r = await rpc(`${app.url}/mcp`, legacyRequest('tools/list'), session);
        return (r.body?.result?.tools as { name: string }[]).some((t) => t.name === 'everything__get-sum') ? undefined : true;
      });
    }
    // "Upstream down": the HTTP upstream goes away; both replicas keep its tools in their catalog.
    upstream.kill();
    await new Promise((resolve) => upstream.once('exit', resolve));
  });
  after(async () => {
    await fast.shutdown('test done');
    await sdk.shutdown('test done');
    upstream.kill();
    await db.drop();
  });

  for (const era of ['legacy', 'modern'] as const) {
    it(`${era} era: every request of the table`, async () => {
      const sessions = new Map<string, Record<string, string>>();
      const send = async (app: TestApp, c: Case, id: number) => {
        const url = `${app.url}${c.path ?? '/mcp'}`;
        if (era === 'modern') {
          const { body, headers } = modernRequest(c.method, c.params, id);
          return rpc(url, body, headers);
        }
        const key = `${app.url}|${url}`;
        if (!sessions.has(key)) sessions.set(key, await legacySession(url));
        return rpc(url, legacyRequest(c.method, c.params, id), sessions.get(key)!);
      };
      const hooks = { fast: fast.app.get(RecordingHook), sdk: sdk.app.get(RecordingHook) };
      let id = 100;
      for (const c of CASES.filter((k) => k.only === undefined || k.only === era)) {
        id += 1;
        hooks.fast.events.length = 0;
        hooks.sdk.events.length = 0;
        const [a, b] = [await send(fast, c, id), await send(sdk, c, id)];
        assert.equal(a.status, b.status, `${c.title}: status`);
        assert.deepEqual(a.body, b.body, `${c.title}: the same JSON-RPC answer`);
        assert.equal(a.body?.id, id, `${c.title}: answered`);
        const paths = (h: RecordingHook) => [...new Set(h.events.map((e) => e.path))];
        assert.deepEqual(paths(hooks.fast), c.fast ? ['fast'] : paths(hooks.sdk), `${c.title}: served by the ${c.fast ? 'fast' : 'SDK'} path`);
        assert.ok(!paths(hooks.sdk).includes('fast'), `${c.title}: MCP_FAST_PATH=false never takes the fast path`);
        if (!c.invalid) assert.ok(hooks.sdk.events.length > 0, `${c.title}: reached the pipeline on the SDK path too`);
      }
    });
  }

  it('modern fast path: headers or envelope the SDK would refuse are left to the SDK (same 400)', async () => {
    const { body, headers } = modernRequest('tools/call', { name: 'everything__echo', arguments: { message: 'm' } }, 7);
    const variants: [string, Record<string, unknown>, Record<string, string>][] = [
      ['Mcp-Name disagrees', body, { ...headers, 'mcp-name': 'everything__other' }],
      ['Mcp-Method disagrees', body, { ...headers, 'mcp-method': 'tools/list' }],
      ['no Mcp-Method', body, Object.fromEntries(Object.entries(headers).filter(([k]) => k !== 'mcp-method'))],
      ['envelope names another version', { ...body, params: { ...(body.params as object), _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-01-01' } } }, headers],
      ['envelope without clientCapabilities', { ...body, params: { ...(body.params as object), _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28' } } }, headers],
    ];
    // Twice each: the second time the fast path's remembered verdict on the envelope decides.
    for (const [title, b, h] of [...variants, ...variants]) {
      const [x, y] = [await rpc(`${fast.url}/mcp`, b, h), await rpc(`${sdk.url}/mcp`, b, h)];
      assert.equal(x.status, y.status, `${title}: status`);
      assert.ok(x.status >= 400, `${title}: refused (${x.status})`);
      assert.deepEqual(x.body, y.body, `${title}: the same error`);
    }
    const good = await rpc(`${fast.url}/mcp`, body, headers);
    assert.equal(good.status, 200, 'and the well-formed request still takes the fast path');
  });
});
