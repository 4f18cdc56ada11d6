import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { getRepositoryToken } from '@nestjs/typeorm';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import type { Repository } from 'typeorm';
import { ChangeBusService } from '../../src/database/change-bus.service.js';
import { UpstreamServerEntity } from '../../src/upstreams/upstream-server.entity.js';
import { UpstreamServersService } from '../../src/upstreams/upstream-servers.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, eventually, processesWith } from '../support/upstreams.js';

const SLOW = resolve('test/fixtures/slow-upstream.mjs');

interface ServerView {
  status: { state: string; lastError: string | null };
}

describe('upstream connection lifecycle', () => {
  let db: TestDatabase;
  let app: TestApp;
  const marker = `GH_LIFE_${randomUUID().replaceAll('-', '')}`;

  const api = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${app.url}/api/v1/servers${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: (text ? JSON.parse(text) : undefined) as unknown };
  };
  const connected = (name: string) =>
    eventually(`${name} connected`, async () => ((await api('GET', `/${name}`)).body as ServerView).status.state === 'connected' || undefined);
  const upstreams = () => app.app.get(UpstreamServersService);

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it('concurrent PATCHes of one server leave exactly one process (was: one leaked per race)', async () => {
    const server = { name: 'raced', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: 'raced' } };
    assert.equal((await api('POST', '', server)).status, 201);
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([
        api('PATCH', '/raced', { env: { [marker]: 'raced', ROUND: `${round}a` } }),
        api('PATCH', '/raced', { env: { [marker]: 'raced', ROUND: `${round}b` } }),
      ]);
      assert.deepEqual(results.map((r) => r.status), [200, 200]);
    }
    await connected('raced');
    assert.equal(processesWith(marker).length, 1, 'one process for one server');
    assert.equal((await api('DELETE', '/raced')).status, 204);
    assert.deepEqual(processesWith(marker), []);
  });

  it('names the HTTP status of an upstream that refuses the handshake, not "connection closed"', async () => {
    // Gatehouse itself answers 404 on an unknown path: an HTTP upstream URL that is not an MCP endpoint.
    assert.equal((await api('POST', '', { name: 'not-mcp', transport: 'streamable_http', url: `${app.url}/not-an-mcp-endpoint` })).status, 201);
    const status = await eventually('the failure recorded', async () => {
      const view = (await api('GET', '/not-mcp')).body as ServerView;
      return view.status.state === 'error' ? view.status : undefined;
    });
    assert.match(status.lastError ?? '', /HTTP 404/, 'the transport\'s close no longer hides the handshake\'s own error');
    assert.equal((await api('DELETE', '/not-mcp')).status, 204);
  });

  it('a description PATCH does not restart the server; a config PATCH fails the running call at once, saying why', { timeout: 30_000 }, async () => {
    const body = { name: 'slow', transport: 'stdio', command: process.execPath, args: [SLOW], env: { [marker]: 'slow', CANCEL_LOG: '/dev/null' }, timeoutMs: 120_000 };
    assert.equal((await api('POST', '', body)).status, 201);
    await connected('slow');
    const [pid] = processesWith(marker);
    const client = new Client({ name: 'lifecycle', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/slow`)));
    try {
      const call = client.callTool({ name: 'wait', arguments: { ms: 600_000 } }, { timeout: 300_000 });
      await eventually('the call is in flight upstream', () => (upstreams().connection('slow')?.inflightCount === 1 ? true : undefined));

      assert.equal((await api('PATCH', '/slow', { description: 'now with a description' })).status, 200);
      assert.deepEqual(processesWith(marker), [pid], 'same process: nothing connection-relevant changed');
      assert.equal(upstreams().connection('slow')?.inflightCount, 1, 'the call is still running');

      const started = Date.now();
      assert.equal((await api('PATCH', '/slow', { env: { ...body.env, MODE: 'changed' } })).status, 200);
      const result = await call;
      assert.ok(Date.now() - started < 10_000, 'answered at once, not after the timeout');
      assert.equal(result.isError, true);
      assert.match((result.content[0] as { text: string }).text, /^Upstream MCP server "slow" failed: .*closed before it answered \(the server configuration changed\)/);
    } finally {
      await client.close();
    }
    assert.equal((await api('DELETE', '/slow')).status, 204);
  });

  it('publishes the change inside the writing transaction: a failed announcement leaves nothing committed', async () => {
    const bus = app.app.get(ChangeBusService);
    const publish = bus.publish.bind(bus);
    const seen: boolean[] = [];
    bus.publish = (async (topic: Parameters<typeof publish>[0], data: unknown, tx?: Parameters<typeof publish>[2]) => {
      const name = typeof topic === 'string' ? topic : topic.name;
      if (name === 'upstreams.changed' && (data as { name?: string } | null)?.name === 'doomed') {
        seen.push(tx !== undefined);
        throw new Error('NOTIFY failed (injected)');
      }
      return publish(topic, data, tx);
    });
    try {
      const res = await api('POST', '', { name: 'doomed', transport: 'stdio', command: process.execPath, args: [SLOW], enabled: false });
      assert.equal(res.status, 500);
      assert.deepEqual(seen, [true], 'published with the transaction');
      assert.deepEqual(await db.query("SELECT name FROM upstream_servers WHERE name = 'doomed'"), [], 'rolled back with the announcement');
    } finally {
      bus.publish = publish;
    }
  });

  it('answers a committed change with success even if applying it locally fails; the bus applies it', async () => {
    const repo = app.app.get<Repository<UpstreamServerEntity>>(getRepositoryToken(UpstreamServerEntity));
    const findOneBy = repo.findOneBy.bind(repo);
    let failures = 0;
    repo.findOneBy = ((where: Parameters<typeof findOneBy>[0]) => {
      if ((where as { name?: string }).name === 'flaky' && failures === 0) {
        failures++;
        return Promise.reject(new Error('connection reset (injected)'));
      }
      return findOneBy(where);
    });
    try {
      const res = await api('POST', '', { name: 'flaky', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], env: { [marker]: 'flaky' } });
      assert.equal(res.status, 201);
      assert.equal(failures, 1, 'the local re-read failed once');
      await connected('flaky');
    } finally {
      repo.findOneBy = findOneBy;
    }
    assert.equal((await api('DELETE', '/flaky')).status, 204);
  });
});

describe('readiness gate "servers"', () => {
  it('is 503 until the registry has loaded, retrying while the query fails', { timeout: 60_000 }, async () => {
    const db = await createTestDatabase();
    const first = await startTestApp(db.url);
    await first.shutdown('migrated');
    await db.query('ALTER TABLE upstream_servers RENAME TO upstream_servers_away');
    const app = await startTestApp(db.url, {}, { waitForServers: false });
    try {
      const readyz = async () => {
        const res = await fetch(`${app.url}/readyz`);
        return { status: res.status, body: (await res.json()) as { checks: Record<string, string>; reasons?: Record<string, string> } };
      };
      const failing = await eventually('the first load failed', async () => {
        const r = await readyz();
        return r.body.checks.servers === 'error' ? r : undefined;
      });
      assert.equal(failing.status, 503);
      assert.match(failing.body.reasons?.servers ?? '', /^could not load the upstream servers: .*upstream_servers/);
      await db.query('ALTER TABLE upstream_servers_away RENAME TO upstream_servers');
      const ready = await eventually('ready after a retry', async () => {
        const r = await readyz();
        return r.status === 200 ? r : undefined;
      });
      assert.equal(ready.body.checks.servers, 'ok');
    } finally {
      await app.shutdown('test');
      await db.drop();
    }
  });
});
