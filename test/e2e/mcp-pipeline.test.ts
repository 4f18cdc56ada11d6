import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ReadinessGates } from '../../src/database/readiness-gates.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually, registerConnected } from '../support/upstreams.js';
import { RecordingHook, RecordingHookModule, legacyRequest, legacySession, modernRequest, rpc } from '../support/mcp-raw.js';

const PROMPT = 'everything__completable-prompt';
const TEXT_TEMPLATE = 'gatehouse://everything/demo://resource/dynamic/text/{resourceId}';
const BLOB_TEMPLATE = 'gatehouse://everything/demo://resource/dynamic/blob/{resourceId}';

describe('the MCP operation pipeline', () => {
  let db: TestDatabase;
  let app: TestApp;
  let hook: RecordingHook;
  const policies: string[] = [];

  const policy = async (body: Record<string, unknown>) => {
    const res = await fetch(`${app.url}/api/v1/policies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const text = await res.text();
    assert.equal(res.status, 201, text);
    policies.push((JSON.parse(text) as { id: string }).id);
  };
  const dropPolicies = async () => {
    for (const id of policies.splice(0)) await fetch(`${app.url}/api/v1/policies/${id}`, { method: 'DELETE' });
  };
  const modernClient = async () => {
    const client = new Client({ name: 'pipeline-test', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`)));
    return client;
  };
  const legacyClient = async () => {
    const client = new LegacyClient({ name: 'pipeline-legacy', version: '1' });
    await client.connect(new LegacyTransport(new URL(`${app.url}/mcp`)));
    return client;
  };
  const codeOf = (e: unknown) => (e as { code?: number }).code;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {}, { imports: [RecordingHookModule] });
    hook = app.app.get(RecordingHook);
    await registerConnected(app.url);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('completion/complete needs prompts/get on the prompt, or resources/read on the resource template (both eras)', async () => {
    const modern = await modernClient();
    const legacy = await legacyClient();
    try {
      const promptRef = { ref: { type: 'ref/prompt' as const, name: PROMPT }, argument: { name: 'department', value: 'Eng' } };
      const blobRef = { ref: { type: 'ref/resource' as const, uri: BLOB_TEMPLATE }, argument: { name: 'resourceId', value: '1' } };
      const textRef = { ref: { type: 'ref/resource' as const, uri: TEXT_TEMPLATE }, argument: { name: 'resourceId', value: '1' } };
      assert.deepEqual((await modern.complete(promptRef)).completion.values, ['Engineering'], 'allowed before any policy');

      await policy({ subject: { role: 'admin' }, effect: 'deny', operations: ['prompts/get'], targets: [PROMPT], description: 'no team prompt' });
      await policy({ subject: { role: 'admin' }, effect: 'deny', operations: ['resources/read'], targets: ['everything__demo://resource/dynamic/blob/*'] });
      for (const client of [modern, legacy]) {
        const denied = await client.complete(promptRef).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.equal(codeOf(denied), -32003, 'completing a denied prompt’s argument is refused like prompts/get');
        assert.match((denied as Error).message, /prompts\/get on "everything__completable-prompt" denied by policy .* \(no team prompt\)/);
        const blob = await client.complete(blobRef).then(
          () => undefined,
          (e: unknown) => e,
        );
        assert.equal(codeOf(blob), -32003, 'completing a denied template’s variable is refused like resources/read');
        assert.deepEqual((await client.complete(textRef)).completion.values, ['1'], 'an allowed template still completes');
      }
    } finally {
      await dropPolicies();
      await modern.close();
      await legacy.close();
    }
  });

  it('resources/templates/list shows only the templates the principal may read (both eras)', async () => {
    const listed = async (client: { listResourceTemplates(): Promise<{ resourceTemplates: { uriTemplate: string }[] }>; close(): Promise<void> }) => {
      try {
        return (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
      } finally {
        await client.close();
      }
    };
    const before = await listed(await modernClient());
    assert.ok(before.includes(BLOB_TEMPLATE) && before.includes(TEXT_TEMPLATE), before.join(', '));
    await policy({ subject: { role: 'admin' }, effect: 'deny', operations: ['resources/read'], targets: ['everything__demo://resource/dynamic/blob/*'] });
    try {
      // Fresh clients: a modern client caches lists for their ttlMs.
      for (const after of [await listed(await modernClient()), await listed(await legacyClient())]) {
        assert.ok(!after.includes(BLOB_TEMPLATE), 'the denied template is hidden');
        assert.ok(after.includes(TEXT_TEMPLATE), 'the others stay');
      }
    } finally {
      await dropPolicies();
    }
  });

  it('every operation kind, of either era and either path, passes through a registered hook with principal, operation, target and outcome', async () => {
    hook.events.length = 0;
    const legacy = await legacyClient();
    await legacy.ping();
    await legacy.listTools();
    await legacy.callTool({ name: 'everything__echo', arguments: { message: 'hooked' } });
    await legacy.listPrompts();
    await legacy.getPrompt({ name: 'everything__simple-prompt' });
    await legacy.listResources();
    await legacy.readResource({ uri: 'gatehouse://everything/demo://resource/static/document/architecture.md' });
    await legacy.listResourceTemplates();
    await legacy.complete({ ref: { type: 'ref/prompt', name: PROMPT }, argument: { name: 'department', value: 'S' } });
    await legacy.setLoggingLevel('info');
    await legacy.close();
    const modern = await modernClient();
    await modern.listTools();
    await modern.callTool({ name: 'everything__echo', arguments: { message: 'hooked' } });
    await modern.getPrompt({ name: 'everything__simple-prompt' });
    await modern.close();
    // Raw legacy session requests take the fast path.
    const session = await legacySession(`${app.url}/mcp`);
    for (const [method, params] of [['ping', undefined], ['tools/list', undefined], ['tools/call', { name: 'everything__echo', arguments: { message: 'fast' } }]] as const) {
      const r = await rpc(`${app.url}/mcp`, legacyRequest(method, params), session);
      assert.equal(r.status, 200);
      assert.ok(r.body?.result, JSON.stringify(r.body));
    }

    const after = hook.events.filter((e) => e.phase === 'after');
    const seen = (kind: string, era: string, path: string) => [...after].reverse().find((e) => e.kind === kind && e.era === era && e.path === path);
    // The legacy SDK client's ping, tools/list and tools/call take the fast path; the rest the SDK's.
    for (const kind of ['ping', 'tools/list', 'tools/call', 'prompts/list', 'prompts/get', 'resources/list', 'resources/read', 'resources/templates/list', 'completion/complete', 'logging/setLevel']) {
      const event = seen(kind, 'legacy', ['ping', 'tools/list', 'tools/call'].includes(kind) ? 'fast' : 'sdk');
      assert.ok(event, `legacy ${kind} reached the hook`);
      assert.equal(event.principal, 'none:anonymous');
      assert.equal(event.scope, '');
      assert.equal(event.outcome?.ok, true, `${kind}: ${JSON.stringify(event.outcome)}`);
      assert.ok(hook.events.some((e) => e.phase === 'before' && e.kind === kind), `${kind} passed beforeCall`);
    }
    for (const kind of ['tools/list', 'tools/call']) assert.ok(seen(kind, 'modern', 'fast'), `modern ${kind} reached the hook (fast path): ${JSON.stringify(after.filter((e) => e.era === 'modern').map((e) => [e.kind, e.path]))}`);
    assert.ok(seen('prompts/get', 'modern', 'sdk'), 'modern prompts/get reached the hook (SDK path)');
    for (const kind of ['ping', 'tools/list', 'tools/call']) assert.ok(seen(kind, 'legacy', 'fast'), `legacy fast-path ${kind} reached the hook`);

    const call = seen('tools/call', 'legacy', 'fast')!;
    assert.deepEqual(call.target, { server: 'everything', name: 'echo' });
    assert.equal(call.policyName, 'everything__echo');
    assert.deepEqual(call.outcome, { ok: true, toolError: false, result: { content: [{ type: 'text', text: 'Echo: fast' }] } });
    assert.deepEqual(seen('resources/read', 'legacy', 'sdk')?.target, { server: 'everything', name: 'demo://resource/static/document/architecture.md' });
    assert.equal(seen('completion/complete', 'legacy', 'sdk')?.policyName, PROMPT);

    // Refusals: an unknown tool and a policy denial reach onRefused; a hook that throws refuses the call.
    hook.events.length = 0;
    const unknown = await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'everything__nope' }), session);
    assert.equal(unknown.body?.error?.code, -32602);
    await policy({ subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['everything__get-sum'] });
    const denied = await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'everything__get-sum', arguments: { a: 1, b: 2 } }), session);
    assert.equal(denied.body?.error?.code, -32003);
    await dropPolicies();
    assert.deepEqual(
      hook.events.map((e) => [e.phase, e.kind, e.error?.code]),
      [
        ['refused', 'tools/call', -32602],
        ['refused', 'tools/call', -32003],
      ],
    );
    hook.refuseNext = true;
    const limited = await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'everything__echo', arguments: { message: 'x' } }), session);
    assert.deepEqual(limited.body?.error, { code: -32029, message: 'Too many requests (test hook)' }, 'a hook refuses with its own JSON-RPC error');
    const last = hook.events.at(-1)!;
    assert.equal(last.phase, 'after');
    assert.deepEqual(last.outcome, { ok: false, error: { code: -32029, message: 'Too many requests (test hook)' } });
  });

  it('fast-path-shaped requests with a non-object _meta or array arguments get the SDK’s JSON-RPC errors (not a 500, not forwarded)', async () => {
    // a01e1be: the fast path evaluated `key in _meta` on a string, threw a TypeError, and the
    // client got HTTP 500 internal_error instead of the JSON-RPC answer.
    const session = await legacySession(`${app.url}/mcp`);
    for (const method of ['tools/call', 'tools/list', 'ping']) {
      const r = await rpc(`${app.url}/mcp`, legacyRequest(method, { name: 'everything__echo', arguments: { message: 'm' }, _meta: 'x' }), session);
      assert.notEqual(r.status, 500, `${method}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body?.jsonrpc, '2.0');
      assert.equal(r.body?.id, 1);
      assert.equal(r.body?.error?.code, -32600, `${method}: the SDK's invalid-request error`);
    }
    // a01e1be: array arguments passed the fast path's check and were forwarded to the upstream,
    // which refused them: -32603 "Upstream MCP server …" instead of the gateway's -32602.
    const arrayArgs = await rpc(`${app.url}/mcp`, legacyRequest('tools/call', { name: 'everything__echo', arguments: ['m'] }), session);
    assert.equal(arrayArgs.body?.error?.code, -32602, JSON.stringify(arrayArgs.body));
    assert.doesNotMatch(arrayArgs.body?.error?.message ?? '', /Upstream/, 'refused by the gateway, not sent upstream');
  });

  it('a legacy client gets non-object output schemas wrapped (type object) from the fast path too', async () => {
    // a01e1be: the fast path spliced the catalog's tools JSON as it was, so a 2025-era client got
    // `outputSchema: { type: "array" }`, which its revision forbids (the SDK path wrapped it).
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'arrays', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/array-output-upstream.mjs')] }),
    });
    assert.equal(res.status, 201);
    try {
      await eventually('arrays connected', async () => {
        const v = (await (await fetch(`${app.url}/api/v1/servers/arrays`)).json()) as { status: { state: string } };
        return v.status.state === 'connected' ? true : undefined;
      });
      const session = await legacySession(`${app.url}/mcp/arrays`);
      hook.events.length = 0;
      const r = await rpc(`${app.url}/mcp/arrays`, legacyRequest('tools/list'), session);
      const [tool] = r.body?.result?.tools as { outputSchema: { type: string; properties: { result: { type: string } }; required: string[] } }[];
      assert.equal(tool.outputSchema.type, 'object');
      assert.equal(tool.outputSchema.properties.result.type, 'array');
      assert.deepEqual(tool.outputSchema.required, ['result']);
      assert.equal(hook.events.find((e) => e.phase === 'after')?.path, 'fast', 'served by the fast path');
    } finally {
      await fetch(`${app.url}/api/v1/servers/arrays`, { method: 'DELETE' });
    }
  });

  it('answers 503 service_unavailable with Retry-After while the policies or servers gate is not ok', async () => {
    const session = await legacySession(`${app.url}/mcp`);
    const gates = app.app.get(ReadinessGates);
    const servers = gates.register('servers');
    const previous = { state: servers.state, reason: servers.reason };
    servers.set('pending', 'loading the server registry');
    try {
      const modern = modernRequest('tools/list');
      for (const [body, headers] of [
        [legacyRequest('tools/list'), session],
        [modern.body, modern.headers],
      ] as const) {
        const r = await rpc(`${app.url}/mcp`, body, headers);
        assert.equal(r.status, 503);
        assert.equal(r.headers.get('retry-after'), '1');
        assert.equal(r.body?.jsonrpc, '2.0');
        assert.equal((r.body?.error?.data as { code?: string }).code, 'service_unavailable');
        assert.match(r.body?.error?.message ?? '', /servers: loading the server registry/);
      }
      const policiesGate = gates.register('policies');
      servers.set('ok');
      policiesGate.set('error', 'cannot load policies');
      const r = await rpc(`${app.url}/mcp`, legacyRequest('tools/list'), session);
      assert.equal(r.status, 503);
      assert.match(r.body?.error?.message ?? '', /policies: cannot load policies/);
      policiesGate.set('ok');
    } finally {
      servers.set(previous.state === 'pending' ? 'ok' : previous.state, previous.reason);
    }
    const ok = await rpc(`${app.url}/mcp`, legacyRequest('tools/list'), session);
    assert.equal(ok.status, 200, 'serves again once the gates are ok');
    const other = gates.register('some-other-gate');
    other.set('pending', 'not ours');
    assert.equal((await rpc(`${app.url}/mcp`, legacyRequest('ping'), session)).status, 200, 'only the policies and servers gates hold /mcp back');
    other.set('ok');
  });
});
