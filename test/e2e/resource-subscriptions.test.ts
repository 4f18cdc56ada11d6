import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ResourceUpdatedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { until } from '../support/until.js';
import { eventually, fixtureOverHttp, readStreamUntil, registerConnected, toolText } from '../support/upstreams.js';

/**
 * Resource subscriptions through the gateway: 2025-era `resources/subscribe` /
 * `resources/unsubscribe` (v1 and v2 SDK clients) and 2026-07-28 `resourceSubscriptions` in
 * `subscriptions/listen` (v2 client), against a real stdio upstream that counts what it is asked.
 */

const FIXTURE = resolve('test/fixtures/subscribable-upstream.mjs');
const A = 'fixture://doc/a';
const B = 'fixture://doc/b';
const agg = (uri: string) => `gatehouse://subs/${uri}`;

interface Stats {
  subscribes: number;
  unsubscribes: number;
  active: string[];
  pid: number;
}

describe('resource subscriptions through the gateway', () => {
  let db: TestDatabase;
  let app: TestApp;
  let probe: V1Client;
  let http: ChildProcess;
  const clients: { close(): Promise<void> }[] = [];

  /** What the upstream was asked so far (its `stats` tool, called on /mcp/subs). */
  const stats = async (): Promise<Stats> => JSON.parse(toolText(await probe.callTool({ name: 'stats', arguments: {} }))) as Stats;
  const touch = async (uri: string) => toolText(await probe.callTool({ name: 'touch', arguments: { uri } }));

  /** A v1 client (2025) on `path` that records the URIs of the updates it receives. */
  const v1 = async (path: string): Promise<{ client: V1Client; updates: string[] }> => {
    const updates: string[] = [];
    const client = new V1Client({ name: 'v1-subscriber', version: '1' });
    client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => void updates.push(n.params.uri));
    await client.connect(new V1Transport(new URL(`${app.url}${path}`)));
    clients.push(client);
    return { client, updates };
  };

  /** Touches `uri` until `updates` holds `expected` (the client's GET stream opens after initialize, asynchronously). */
  const touchUntilSeen = async (uri: string, updates: string[], expected: string) => {
    await eventually(`update for ${expected}`, async () => {
      await touch(uri);
      await new Promise((r) => setTimeout(r, 150));
      return updates.includes(expected) ? true : undefined;
    });
  };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await registerConnected(app.url, { name: 'subs', transport: 'stdio', command: process.execPath, args: [FIXTURE] });
    await registerConnected(app.url, { name: 'plain', transport: 'stdio', command: process.execPath, args: [FIXTURE], env: { NO_SUBSCRIBE: '1' } });
    // The same fixture over streamable HTTP (2025): calls go through the pooled forwarder, updates come on the upstream session's GET stream.
    const fixture = await fixtureOverHttp(FIXTURE, ['http']);
    http = fixture.child;
    await registerConnected(app.url, { name: 'subshttp', transport: 'streamable_http', url: `${fixture.base}/mcp` });
    probe = new V1Client({ name: 'probe', version: '1' });
    await probe.connect(new V1Transport(new URL(`${app.url}/mcp/subs`)));
  });
  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await probe.close();
    await app.shutdown('test done');
    http.kill();
    await db.drop();
  });

  it('advertises resources.subscribe on /mcp and on a server that supports it, not on one that does not', async () => {
    const aggregated = await v1('/mcp');
    assert.equal(aggregated.client.getServerCapabilities()?.resources?.subscribe, true);
    const subs = await v1('/mcp/subs');
    assert.equal(subs.client.getServerCapabilities()?.resources?.subscribe, true);
    const plain = await v1('/mcp/plain');
    assert.notEqual(plain.client.getServerCapabilities()?.resources?.subscribe, true);
  });

  it('v1 client on /mcp: subscribes an aggregated URI, gets its updates under that URI; one upstream subscription for two sessions, released when both are gone', async () => {
    const before = await stats();
    const first = await v1('/mcp');
    const second = await v1('/mcp');
    const bystander = await v1('/mcp');
    assert.deepEqual(await first.client.subscribeResource({ uri: agg(A) }), {});
    assert.deepEqual(await second.client.subscribeResource({ uri: agg(A) }), {});
    const during = await stats();
    assert.equal(during.subscribes - before.subscribes, 1, 'the upstream is subscribed once for both sessions');
    assert.ok(during.active.includes(A));

    await touchUntilSeen(A, first.updates, agg(A));
    await touchUntilSeen(A, second.updates, agg(A));
    assert.ok(first.updates.every((u) => u === agg(A)), `only the aggregated URI: ${first.updates.join(', ')}`);
    assert.deepEqual(bystander.updates, [], 'a session that did not subscribe gets nothing');

    // The first unsubscribes: the upstream subscription stays for the second.
    assert.deepEqual(await first.client.unsubscribeResource({ uri: agg(A) }), {});
    const seenBefore = first.updates.length;
    const secondBefore = second.updates.length;
    await touch(A);
    await until(() => second.updates.length > secondBefore, 5_000, 'the second session still gets updates');
    assert.equal(first.updates.length, seenBefore, 'no update after unsubscribing');
    assert.ok((await stats()).active.includes(A));

    // The second session ends (DELETE): the last watcher is gone, the upstream is unsubscribed.
    await (second.client.transport as V1Transport).terminateSession();
    await second.client.close();
    await eventually('the upstream unsubscribed', async () => ((await stats()).active.includes(A) ? undefined : true));
    assert.equal((await stats()).unsubscribes - before.unsubscribes, 1, 'unsubscribed once, by the last release');
  });

  it('v2 client (2025 revision) on /mcp/subs: subscribes with the upstream URI and gets updates under it', async () => {
    const updates: string[] = [];
    const client = new Client({ name: 'v2-legacy', version: '1' }, { versionNegotiation: { mode: 'legacy' } });
    client.setNotificationHandler('notifications/resources/updated', (n) => void updates.push(n.params.uri));
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/subs`)));
    clients.push(client);
    await client.subscribeResource({ uri: B });
    await touchUntilSeen(B, updates, B);
    await client.unsubscribeResource({ uri: B });
    await eventually('B unsubscribed upstream', async () => ((await stats()).active.includes(B) ? undefined : true));
  });

  it('a streamable-HTTP upstream: the update arrives on its session and reaches the subscribed session', async () => {
    const subscriber = await v1('/mcp');
    await subscriber.client.subscribeResource({ uri: `gatehouse://subshttp/${A}` });
    const toucher = await v1('/mcp/subshttp');
    await eventually('update from the HTTP upstream', async () => {
      await toucher.client.callTool({ name: 'touch', arguments: { uri: A } });
      await new Promise((r) => setTimeout(r, 150));
      return subscriber.updates.includes(`gatehouse://subshttp/${A}`) ? true : undefined;
    });
    await subscriber.client.unsubscribeResource({ uri: `gatehouse://subshttp/${A}` });
  });

  it('subscribing needs the permission to read: a denied resource is refused with -32003, an unknown one with -32602', async () => {
    const policy = await fetch(`${app.url}/api/v1/policies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ subject: { role: 'admin' }, effect: 'deny', operations: ['resources/read'], targets: [`subs__${B}`], description: 'nobody reads b' }),
    });
    assert.equal(policy.status, 201);
    const { id } = (await policy.json()) as { id: string };
    try {
      const { client } = await v1('/mcp');
      await assert.rejects(client.subscribeResource({ uri: agg(B) }), (e: { code?: number; message?: string }) => e.code === -32003 && /nobody reads b/.test(e.message ?? ''));
      await assert.rejects(client.subscribeResource({ uri: 'gatehouse://nope/x' }), (e: { code?: number }) => e.code === -32602);
      assert.ok(!(await stats()).active.includes(B), 'nothing was sent upstream');

      // 2026-07-28: the denied and unknown URIs are left out of the acknowledged filter.
      const modern = new Client({ name: 'v2-modern', version: '1' }, { versionNegotiation: { mode: 'auto' } });
      await modern.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`)));
      clients.push(modern);
      const subscription = await modern.listen({ resourceSubscriptions: [agg(A), agg(B), 'gatehouse://nope/x'] });
      assert.deepEqual(subscription.honoredFilter.resourceSubscriptions, [agg(A)]);
      await subscription.close();
    } finally {
      await fetch(`${app.url}/api/v1/policies/${id}`, { method: 'DELETE' });
    }
  });

  it('a server without resources.subscribe: subscribing answers -32601 naming it, on /mcp and on /mcp/<server>', async () => {
    const { client } = await v1('/mcp');
    await assert.rejects(client.subscribeResource({ uri: `gatehouse://plain/${A}` }), (e: { code?: number; message?: string }) => e.code === -32601 && /"plain" does not support resource subscriptions/.test(e.message ?? ''));
    const single = await v1('/mcp/plain');
    await assert.rejects(single.client.subscribeResource({ uri: A }), (e: { code?: number; message?: string }) => e.code === -32601 && /"plain"/.test(e.message ?? ''));
  });

  it('v2 client (2026-07-28): resourceSubscriptions in subscriptions/listen receive updates; the upstream is unsubscribed when the stream closes', async () => {
    const updates: string[] = [];
    const client = new Client({ name: 'v2-modern', version: '1' }, { versionNegotiation: { mode: 'auto' } });
    client.setNotificationHandler('notifications/resources/updated', (n) => void updates.push(n.params.uri));
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp`)));
    clients.push(client);
    const subscription = await client.listen({ resourceSubscriptions: [agg(B)] });
    assert.deepEqual(subscription.honoredFilter.resourceSubscriptions, [agg(B)]);
    assert.ok((await stats()).active.includes(B), 'subscribed upstream while the stream is open');
    await touchUntilSeen(B, updates, agg(B));
    await subscription.close();
    await eventually('B unsubscribed upstream after the stream closed', async () => ((await stats()).active.includes(B) ? undefined : true));
  });

  it('after the upstream restarts, its subscriptions are made again and updates keep coming', async () => {
    const subscriber = await v1('/mcp');
    await subscriber.client.subscribeResource({ uri: agg(A) });
    await touchUntilSeen(A, subscriber.updates, agg(A));
    const { pid } = await stats();
    await probe.callTool({ name: 'crash', arguments: {} }).catch(() => undefined);
    // The gateway reconnects (backoff 1 s) and subscribes again on the new process.
    await eventually('re-subscribed on a new process', async () => {
      try {
        const now = await stats();
        return now.pid !== pid && now.active.includes(A) ? true : undefined;
      } catch {
        return undefined;
      }
    });
    const seen = subscriber.updates.length;
    await touch(A);
    await until(() => subscriber.updates.length > seen, 5_000, 'an update after the restart');
  });
});

describe('resource subscriptions across two replicas', () => {
  let db: TestDatabase;
  let a: TestApp;
  let b: TestApp;

  before(async () => {
    db = await createTestDatabase();
    a = await startTestApp(db.url);
    b = await startTestApp(db.url);
    await registerConnected(a.url, { name: 'subs', transport: 'stdio', command: process.execPath, args: [FIXTURE] });
    await eventually('subs connected on B', async () => {
      const v = (await (await fetch(`${b.url}/api/v1/servers/subs`)).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
  });
  after(async () => {
    await a.shutdown('test done');
    await b.shutdown('test done');
    await db.drop();
  });

  it('subscribed on replica A, the session’s GET stream held by replica B: the update reaches it over the change bus', async () => {
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18' };
    const init = await fetch(`${a.url}/mcp/subs`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }),
    });
    const session = init.headers.get('mcp-session-id')!;
    await init.text();
    const withSession = { ...headers, 'mcp-session-id': session };
    await fetch(`${a.url}/mcp/subs`, { method: 'POST', headers: withSession, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
    const stream = await fetch(`${b.url}/mcp/subs`, { headers: { ...withSession, accept: 'text/event-stream' } });
    assert.equal(stream.status, 200);
    const seen = readStreamUntil(stream, 'notifications/resources/updated');
    const subscribed = await fetch(`${a.url}/mcp/subs`, { method: 'POST', headers: withSession, body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'resources/subscribe', params: { uri: A } }) });
    assert.match(await subscribed.text(), /"result":\{\}/);
    // A's own upstream process holds the subscription: touch it through A.
    const probe = new V1Client({ name: 'probe', version: '1' });
    await probe.connect(new V1Transport(new URL(`${a.url}/mcp/subs`)));
    assert.equal(toolText(await probe.callTool({ name: 'touch', arguments: { uri: A } })), `updated ${A}`);
    await probe.close();
    assert.match(await seen, /"method":"notifications\/resources\/updated","params":\{"uri":"fixture:\/\/doc\/a"\}/);
  });
});
