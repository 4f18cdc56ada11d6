import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, everythingOverHttp, registerConnected, toolText } from '../support/upstreams.js';

/** Progress from upstreams: every notification arrives, before the result; progress extends the call's timeout, within a total cap. */

const text = toolText;

describe('progress through the gateway', () => {
  let db: TestDatabase;
  let app: TestApp;
  const children: ChildProcess[] = [];

  const register = (body: { name: string } & Record<string, unknown>) => registerConnected(app.url, body);

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT: '2500' });
    await register({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] });
    const http = await everythingOverHttp('streamableHttp');
    children.push(http.child);
    await register({ name: 'remote', transport: 'streamable_http', url: http.url });
    // A short timeout: 800 ms without an answer — or, with a progress token, without progress.
    await register({ name: 'short', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'], timeoutMs: 800 });
    const shortHttp = await everythingOverHttp('streamableHttp');
    children.push(shortHttp.child);
    await register({ name: 'shorthttp', transport: 'streamable_http', url: shortHttp.url, timeoutMs: 800 });
  });
  after(async () => {
    await app.shutdown('test done');
    for (const child of children) child.kill();
    await db.drop();
  });

  for (const server of ['everything', 'remote']) {
    it(`v1 client (2025): all progress notifications of 8 ${server} calls arrive, the last one included, before the result`, async () => {
      const client = new V1Client({ name: 'v1', version: '1' });
      await client.connect(new V1Transport(new URL(`${app.url}/mcp`)));
      try {
        for (let call = 0; call < 8; call++) {
          const seen: number[] = [];
          const result = await client.callTool({ name: `${server}__trigger-long-running-operation`, arguments: { duration: 0.03, steps: 3 } }, undefined, {
            onprogress: (p) => seen.push(p.progress),
          });
          assert.match(text(result), /completed/);
          assert.deepEqual(seen, [1, 2, 3], `call ${call}`);
        }
      } finally {
        await client.close();
      }
    });
  }

  for (const mode of ['auto', 'legacy'] as const) {
    it(`v2 client (${mode === 'auto' ? '2026-07-28' : '2025'}): all progress notifications of 8 stdio calls arrive, the last one included`, async () => {
      const client = new Client({ name: 'v2', version: '1' }, { capabilities: {}, versionNegotiation: { mode } });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${app.url}/mcp/everything`)));
      try {
        for (let call = 0; call < 8; call++) {
          const seen: number[] = [];
          await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 0.03, steps: 3 } }, { onprogress: (p) => seen.push(p.progress) });
          assert.deepEqual(seen, [1, 2, 3], `call ${call}`);
        }
      } finally {
        await client.close();
      }
    });
  }

  for (const server of ['short', 'shorthttp']) {
    it(`${server}: progress extends the call's timeout (resetTimeoutOnProgress), up to GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT`, async () => {
      const client = new V1Client({ name: 'v1', version: '1' });
      await client.connect(new V1Transport(new URL(`${app.url}/mcp`)));
      try {
        // 1.5 s in all, progress every 300 ms: longer than the 800 ms timeout, never 800 ms silent.
        const extended = await client.callTool({ name: `${server}__trigger-long-running-operation`, arguments: { duration: 1.5, steps: 5 } }, undefined, {
          onprogress: () => undefined,
          timeout: 30_000,
        });
        assert.match(text(extended), /completed/);
        // Without a progress token the server's own timeout holds.
        const silent = await client.callTool({ name: `${server}__trigger-long-running-operation`, arguments: { duration: 1.5, steps: 5 } });
        assert.equal(silent.isError, true);
        assert.match(text(silent), /no answer within 800 ms|timed out/);
        // Progress cannot extend it past the total cap (2.5 s).
        const capped = await client.callTool({ name: `${server}__trigger-long-running-operation`, arguments: { duration: 4, steps: 10 } }, undefined, {
          onprogress: () => undefined,
          timeout: 30_000,
        });
        assert.equal(capped.isError, true, text(capped));
      } finally {
        await client.close();
      }
    });
  }
});
