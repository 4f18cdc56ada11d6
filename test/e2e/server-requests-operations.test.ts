import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, LoggingMessageNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { fixtureOverHttp, registerConnected } from '../support/upstreams.js';

/**
 * Server-to-client requests (elicitation, sampling) and log messages an upstream sends while
 * serving `prompts/get`, `resources/read` or `completion/complete` reach the calling client as
 * they do for `tools/call`: 2025-era clients (v1, v2 on a 2025 revision) as requests on the
 * call's stream, 2026-07-28 clients as `input_required` rounds (MRTR). Upstreams: the same
 * fixture over stdio (`talk`) and over streamable HTTP (`talkhttp`, the pooled forwarder).
 */

const FIXTURE = resolve('test/fixtures/subscribable-upstream.mjs');
const SAMPLED = 'sampled by the caller';

interface Seen {
  elicitation: number;
  sampling: number;
  logs: string[];
}

/** A v1 client (2025) answering elicitation and sampling, recording log messages. */
async function v1(url: string): Promise<{ client: V1Client; seen: Seen }> {
  const seen: Seen = { elicitation: 0, sampling: 0, logs: [] };
  const client = new V1Client({ name: 'v1', version: '1' }, { capabilities: { sampling: {}, elicitation: { form: {} } } });
  client.setRequestHandler(ElicitRequestSchema, () => (seen.elicitation++, { action: 'accept', content: { name: 'Ada from v1' } }));
  client.setRequestHandler(CreateMessageRequestSchema, () => (seen.sampling++, { role: 'assistant', model: 'm', content: { type: 'text', text: SAMPLED } }));
  client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => void seen.logs.push(String(n.params.data)));
  await client.connect(new V1Transport(new URL(url)));
  return { client, seen };
}

/** A v2 client (`auto`: 2026-07-28; `legacy`: a 2025 revision) answering elicitation and sampling, recording log messages. */
async function v2(url: string, mode: 'auto' | 'legacy'): Promise<{ client: Client; seen: Seen }> {
  const seen: Seen = { elicitation: 0, sampling: 0, logs: [] };
  const client = new Client({ name: `v2-${mode}`, version: '1' }, { capabilities: { sampling: {}, elicitation: { form: {} } }, versionNegotiation: { mode } });
  client.setRequestHandler('elicitation/create', () => (seen.elicitation++, Promise.resolve({ action: 'accept' as const, content: { name: 'Ada from v2' } })));
  client.setRequestHandler('sampling/createMessage', () => (seen.sampling++, Promise.resolve({ role: 'assistant' as const, model: 'm', content: { type: 'text' as const, text: SAMPLED } })));
  client.setNotificationHandler('notifications/message', (n) => void seen.logs.push(String(n.params.data)));
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return { client, seen };
}

const promptText = (result: { messages: { content: unknown }[] }) => (result.messages[0].content as { text: string }).text;
const resourceText = (result: { contents: unknown[] }) => (result.contents[0] as { text: string }).text;

describe('server-to-client requests and logs during prompts, resources and completions', () => {
  let db: TestDatabase;
  let app: TestApp;
  let http: ChildProcess;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await registerConnected(app.url, { name: 'talk', transport: 'stdio', command: process.execPath, args: [FIXTURE] });
    const fixture = await fixtureOverHttp(FIXTURE, ['http']);
    http = fixture.child;
    await registerConnected(app.url, { name: 'talkhttp', transport: 'streamable_http', url: `${fixture.base}/mcp` });
  });
  after(async () => {
    await app.shutdown('test done');
    http.kill();
    await db.drop();
  });

  for (const server of ['talk', 'talkhttp']) {
    it(`v1 client (2025) on /mcp, ${server}: prompts/get elicits and samples through the caller, its log message arrives`, async () => {
      const { client, seen } = await v1(`${app.url}/mcp`);
      try {
        const prompt = await client.getPrompt({ name: `${server}__interview`, arguments: { topic: 'gateways' } });
        assert.equal(promptText(prompt), `interview of Ada from v1 (${SAMPLED}) on gateways`);
        assert.deepEqual([seen.elicitation, seen.sampling], [1, 1]);
        assert.ok(seen.logs.includes('prompt is working'), `logs: ${seen.logs.join(', ')}`);

        const read = await client.readResource({ uri: `gatehouse://${server}/fixture://interactive` });
        assert.equal(resourceText(read), 'read by Ada from v1');
        assert.equal(seen.elicitation, 2);
        assert.ok(seen.logs.includes('resource read is working'));

        const completed = await client.complete({ ref: { type: 'ref/prompt', name: `${server}__interview` }, argument: { name: 'topic', value: 'gate' } });
        assert.deepEqual(completed.completion.values, ['gate-done']);
        assert.ok(seen.logs.includes('completion is working'));
      } finally {
        await client.close();
      }
    });
  }

  it('v2 client on a 2025 revision, /mcp/talk: prompts/get and resources/read reach it with requests and logs', async () => {
    const { client, seen } = await v2(`${app.url}/mcp/talk`, 'legacy');
    try {
      const prompt = await client.getPrompt({ name: 'interview', arguments: { topic: 'x' } });
      assert.equal(promptText(prompt), `interview of Ada from v2 (${SAMPLED}) on x`);
      const read = await client.readResource({ uri: 'fixture://interactive' });
      assert.equal(resourceText(read), 'read by Ada from v2');
      assert.deepEqual([seen.elicitation, seen.sampling], [2, 1]);
      assert.ok(seen.logs.includes('prompt is working') && seen.logs.includes('resource read is working'), `logs: ${seen.logs.join(', ')}`);
    } finally {
      await client.close();
    }
  });

  for (const server of ['talk', 'talkhttp']) {
    it(`v2 client on 2026-07-28, ${server}: prompts/get and resources/read ask through input_required rounds (MRTR)`, async () => {
      const { client, seen } = await v2(`${app.url}/mcp`, 'auto');
      try {
        const prompt = await client.getPrompt({ name: `${server}__interview`, arguments: { topic: 'y' } });
        assert.equal(promptText(prompt), `interview of Ada from v2 (${SAMPLED}) on y`);
        const read = await client.readResource({ uri: `gatehouse://${server}/fixture://interactive` });
        assert.equal(resourceText(read), 'read by Ada from v2');
        assert.deepEqual([seen.elicitation, seen.sampling], [2, 1]);
        assert.ok(seen.logs.includes('prompt is working'), `logs: ${seen.logs.join(', ')}`);
        const completed = await client.complete({ ref: { type: 'ref/prompt', name: `${server}__interview` }, argument: { name: 'topic', value: 'z' } });
        assert.deepEqual(completed.completion.values, ['z-done']);
        assert.ok(seen.logs.includes('completion is working'));
      } finally {
        await client.close();
      }
    });
  }
});
