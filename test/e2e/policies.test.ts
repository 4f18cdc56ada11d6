import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as LegacyClient } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as LegacyTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually, registerConnected } from '../support/upstreams.js';

interface PolicyView {
  id: string;
  subject: Record<string, string>;
  effect: string;
}

async function withEverything(app: TestApp): Promise<void> {
  await registerConnected(app.url);
}

const api = async (app: TestApp, method: string, path: string, body?: unknown) => {
  const res = await fetch(`${app.url}/api/v1/policies${path}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: (text ? JSON.parse(text) : undefined) as Record<string, unknown> & { error?: { code: string; message: string } } };
};

async function legacyTools(app: TestApp, path = '/mcp'): Promise<{ names: string[]; call: (name: string) => Promise<unknown>; close: () => Promise<void> }> {
  const client = new LegacyClient({ name: 'policy-test', version: '1' });
  await client.connect(new LegacyTransport(new URL(`${app.url}${path}`)));
  const { tools } = await client.listTools();
  return {
    names: tools.map((t) => t.name),
    call: (name) => client.callTool({ name, arguments: { a: 1, b: 2, message: 'x' } }).then((r) => r, (e: Error) => e),
    close: () => client.close(),
  };
}

describe('per-operation policies', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await withEverything(app);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('rejects bad policies with 400 naming the field, and unknown ids with 404', async () => {
    const cases: [unknown, RegExp][] = [
      [{ subject: { role: 'a', group: 'b' }, effect: 'deny', operations: ['*'], targets: ['*'] }, /^subject: expected exactly one of/],
      [{ subject: { team: 'a' }, effect: 'deny', operations: ['*'], targets: ['*'] }, /^subject: expected exactly one of/],
      [{ subject: { role: 'a' }, effect: 'maybe', operations: ['*'], targets: ['*'] }, /^effect: expected allow or deny, got "maybe"$/],
      [{ subject: { role: 'a' }, effect: 'deny', operations: [], targets: ['*'] }, /^operations: expected at least one of/],
      [{ subject: { role: 'a' }, effect: 'deny', operations: ['tools/delete'], targets: ['*'] }, /^operations\.0: expected one of tools\/call, resources\/read, prompts\/get, \*/],
      [{ subject: { role: 'a' }, effect: 'deny', operations: ['*'], targets: [] }, /^targets: expected at least one target glob/],
      [{ subject: { role: 'a' }, effect: 'deny', operations: ['*'], targets: ['bad glob'] }, /^targets\.0: expected a name glob/],
    ];
    for (const [body, message] of cases) {
      const res = await api(app, 'POST', '', body);
      assert.equal(res.status, 400, JSON.stringify(body));
      assert.equal(res.body.error?.code, 'validation_failed');
      assert.match(res.body.error?.message ?? '', message);
    }
    assert.equal((await api(app, 'PATCH', '/not-a-uuid', {})).status, 404);
    assert.equal((await api(app, 'DELETE', '/00000000-0000-4000-8000-000000000000')).status, 404);
    assert.deepEqual((await api(app, 'GET', '')).body.items, [], 'nothing was written');
  });

  it('a deny hides the tools it covers from lists and refuses calls, naming the policy', async () => {
    const created = await api(app, 'POST', '', {
      subject: { role: 'admin' },
      effect: 'deny',
      operations: ['tools/call'],
      targets: ['everything__get-*'],
      description: 'no getters here',
    });
    assert.equal(created.status, 201);
    const policy = created.body as unknown as PolicyView;
    assert.deepEqual(policy.subject, { role: 'admin' });

    const legacy = await legacyTools(app);
    assert.ok(legacy.names.includes('everything__echo'));
    assert.ok(!legacy.names.some((n) => n.startsWith('everything__get-')), 'denied tools are not listed');
    const refused = (await legacy.call('everything__get-sum')) as Error;
    assert.ok(refused instanceof Error);
    assert.match(refused.message, new RegExp(`denied by policy ${policy.id} \\(no getters here\\)`));
    await legacy.close();

    const modern = new Client({ name: 'm', version: '1' }, { capabilities: {}, versionNegotiation: { mode: 'auto' } });
    await modern.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/everything`)));
    const own = (await modern.listTools()).tools.map((t) => t.name);
    assert.ok(own.includes('echo') && !own.includes('get-sum'), 'the same rule applies under the server’s own names');
    await assert.rejects(modern.callTool({ name: 'get-sum', arguments: { a: 1, b: 2 } }), /Forbidden: tools\/call on "everything__get-sum" denied by policy/);
    await modern.close();

    // Removing the policy gives the tools back.
    assert.equal((await api(app, 'DELETE', `/${policy.id}`)).status, 204);
    const after = await legacyTools(app);
    assert.ok(after.names.includes('everything__get-sum'));
    await after.close();
  });

  it('a call allowed (its decision remembered) is refused once a deny is added, and allowed again once it is removed', async () => {
    const client = await legacyTools(app);
    try {
      const echo = (await client.call('everything__echo')) as { content?: { text: string }[] };
      assert.match(echo.content?.[0]?.text ?? '', /Echo: x/);
      const created = await api(app, 'POST', '', { subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['everything__echo'] });
      assert.equal(created.status, 201);
      const refused = await client.call('everything__echo');
      assert.ok(refused instanceof Error, `refused after the deny (not the remembered allow): ${JSON.stringify(refused)}`);
      assert.equal((await api(app, 'DELETE', `/${String(created.body.id)}`)).status, 204);
      const again = (await client.call('everything__echo')) as { content?: { text: string }[] };
      assert.match(again.content?.[0]?.text ?? '', /Echo: x/);
    } finally {
      await client.close();
    }
  });

  it('a policy added on one replica applies on another without restart (bounded wait)', async () => {
    const other = await startTestApp(db.url);
    try {
      await eventually('replica B connected', async () => {
        const v = (await (await fetch(`${other.url}/api/v1/servers/everything`)).json()) as { status: { state: string } };
        return v.status.state === 'connected' ? true : undefined;
      });
      const created = await api(app, 'POST', '', { subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['everything__echo'] });
      assert.equal(created.status, 201);
      await eventually('denied on B', async () => {
        const view = await legacyTools(other);
        await view.close();
        return view.names.includes('everything__echo') ? undefined : true;
      }, 3_000);
      assert.equal((await api(app, 'DELETE', `/${String(created.body.id)}`)).status, 204);
    } finally {
      await other.shutdown('test');
    }
  });

  it('with GATEHOUSE_POLICY_DEFAULT=deny only what a policy allows is visible and callable; deny wins over allow', async () => {
    const own = await createTestDatabase();
    const strict = await startTestApp(own.url, { GATEHOUSE_POLICY_DEFAULT: 'deny' });
    try {
      await withEverything(strict);
      let view = await legacyTools(strict);
      assert.deepEqual(view.names, [], 'nothing is allowed by default');
      await view.close();

      const allow = await api(strict, 'POST', '', { subject: { role: 'admin' }, effect: 'allow', operations: ['*'], targets: ['everything__echo', 'everything__get-sum'] });
      assert.equal(allow.status, 201);
      view = await legacyTools(strict);
      assert.deepEqual(view.names.sort(), ['everything__echo', 'everything__get-sum']);
      const denied = (await view.call('everything__get-env')) as Error;
      assert.match(denied.message, /no policy allows it and GATEHOUSE_POLICY_DEFAULT is deny/);
      await view.close();

      const deny = await api(strict, 'POST', '', { subject: { role: 'admin' }, effect: 'deny', operations: ['tools/call'], targets: ['*sum'] });
      view = await legacyTools(strict);
      assert.deepEqual(view.names, ['everything__echo'], 'deny wins over allow');
      await view.close();

      const patched = await api(strict, 'PATCH', `/${String(deny.body.id)}`, { targets: ['nothing__*'] });
      assert.equal(patched.status, 200);
      view = await legacyTools(strict);
      assert.deepEqual(view.names.sort(), ['everything__echo', 'everything__get-sum']);
      await view.close();
    } finally {
      await strict.shutdown('test');
      await own.drop();
    }
  });
});
