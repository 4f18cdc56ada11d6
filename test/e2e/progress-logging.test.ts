import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { until } from '../support/until.js';
import { EVERYTHING, everythingOverHttp, registerConnected, toolText } from '../support/upstreams.js';

/**
 * Progress from upstreams: every notification arrives, before the result; progress extends the
 * call's timeout, within a total cap. Log messages: to the session that caused them, at its level.
 */

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

describe('logging through the gateway', () => {
  let db: TestDatabase;
  let app: TestApp;
  const FIXTURE = resolve('test/fixtures/logging-upstream.mjs');

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await registerConnected(app.url, { name: 'logfix', transport: 'stdio', command: process.execPath, args: [FIXTURE] });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  /** A v1 session that records the log messages it receives. */
  const session = async (path: string) => {
    const client = new V1Client({ name: 'v1', version: '1' });
    const messages: string[] = [];
    client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => {
      messages.push(String(n.params.data));
    });
    await client.connect(new V1Transport(new URL(`${app.url}${path}`)));
    return { client, messages };
  };

  it('log messages reach the session whose call caused them, filtered by that session’s own level', async () => {
    const a = await session('/mcp');
    const b = await session('/mcp/logfix');
    try {
      await a.client.setLoggingLevel('error');
      await b.client.setLoggingLevel('debug'); // the last setter: it must not decide for A
      // Without a progress token (fast path): the session's GET stream.
      await a.client.callTool({ name: 'logfix__emit', arguments: { tag: 'A' } });
      await until(() => a.messages.includes('emergency from A'));
      assert.deepEqual(a.messages, ['error from A', 'critical from A', 'alert from A', 'emergency from A']);
      // With a progress token (SDK path): the call's own response stream, before the result.
      await b.client.callTool({ name: 'emit', arguments: { tag: 'B' } }, undefined, { onprogress: () => undefined });
      assert.deepEqual(b.messages, ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'].map((l) => `${l} from B`));
      assert.ok(!a.messages.some((m) => m.endsWith('from B')), 'A never sees B’s messages');
    } finally {
      await a.client.close();
      await b.client.close();
    }
  });
});
