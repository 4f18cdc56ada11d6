import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { UpstreamPoolService } from '../../src/upstreams/upstream-pool.service.js';
import { UpstreamServersService } from '../../src/upstreams/upstream-servers.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { eventually, processesWith } from '../support/upstreams.js';

const SLOW = resolve('test/fixtures/slow-upstream.mjs');
const JWT_SECRET = 'pool-lifecycle-jwt-secret-0123456789abcdef';
const ADMIN_KEY = `admin-${randomBytes(12).toString('hex')}`;

describe('per-user connections: retiring fails calls in flight at once', () => {
  let db: TestDatabase;
  let app: TestApp;
  const marker = `GH_POOLLIFE_${randomBytes(6).toString('hex')}`;
  const admin = { 'x-api-key': ADMIN_KEY };
  const json = { 'content-type': 'application/json' };

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'bearer,api_key', MCP_JWT_SECRET: JWT_SECRET, MCP_API_KEYS: ADMIN_KEY });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
    assert.deepEqual(processesWith(marker), [], 'no upstream process outlives the gateway');
  });

  it("a changed secret retires the caller's process and its running call ends at once, naming why", { timeout: 30_000 }, async () => {
    const created = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { ...json, ...admin },
      body: JSON.stringify({ name: 'vault', transport: 'stdio', command: process.execPath, args: [SLOW], env: { TOKEN: '${secret:TOKEN}', CANCEL_LOG: '/dev/null', [marker]: '1' }, timeoutMs: 120_000 }),
    });
    assert.equal(created.status, 201);
    await eventually('listing process connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/vault`, { headers: admin })).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
    const dora = { authorization: `Bearer ${await hsToken(JWT_SECRET, { sub: 'dora' })}` };
    const setSecret = async (value: string) => {
      const res = await fetch(`${app.url}/api/v1/me/secrets/vault/TOKEN`, { method: 'PUT', headers: { ...json, ...dora }, body: JSON.stringify({ value }) });
      assert.ok(res.status < 300, `secret set: ${res.status}`);
    };
    await setSecret(`first-${randomBytes(8).toString('hex')}`);

    const client = new Client({ name: 'pool-lifecycle', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/vault`), { requestInit: { headers: dora } }));
    try {
      const call = client.callTool({ name: 'wait', arguments: { ms: 600_000 } }, { timeout: 300_000 });
      const pool = app.app.get(UpstreamPoolService);
      await eventually("dora's call is in flight on her own connection", () => (pool.connectionsOf('vault').some((c) => c.inflightCount === 1) ? true : undefined));
      assert.equal(app.app.get(UpstreamServersService).connection('vault')?.inflightCount, 0, 'not on the shared (listing) connection');
      assert.equal(processesWith(marker).length, 2);

      const started = Date.now();
      await setSecret(`second-${randomBytes(8).toString('hex')}`);
      const result = await call;
      assert.ok(Date.now() - started < 10_000, 'answered at once, not after the timeout');
      assert.equal(result.isError, true);
      assert.match((result.content[0] as { text: string }).text, /closed before it answered \(its secrets changed\)/);
      await eventually('her old process is gone', () => (processesWith(marker).length === 1 ? true : undefined));
    } finally {
      await client.close();
    }
  });
});
