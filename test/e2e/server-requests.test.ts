import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, everythingOverHttp, registerConnected, toolText } from '../support/upstreams.js';

/**
 * Server-initiated requests (sampling, elicitation, roots) from real upstreams reach the client
 * whose call caused them, in both eras: 2025-era clients on the call's response stream or the
 * session's GET stream, 2026-07-28 clients as `input_required` results (MRTR).
 */

const ALL_CAPS = { sampling: {}, elicitation: { form: {}, url: {} }, roots: {} };
const SAMPLED = 'sampled by the calling client';
const ROOT = { uri: 'file:///work/project-x', name: 'project-x' };

type Answers = { sampling: number; elicitation: number; roots: number };

/** A v2 SDK client (2026-07-28 with `auto`, a 2025 revision with `legacy`) that answers sampling, elicitation and roots. */
async function v2Client(url: string, mode: 'auto' | 'legacy', capabilities: Record<string, unknown> = ALL_CAPS): Promise<{ client: Client; answers: Answers }> {
  const answers: Answers = { sampling: 0, elicitation: 0, roots: 0 };
  const client = new Client({ name: `v2-${mode}`, version: '1' }, { capabilities, versionNegotiation: { mode } });
  if ('sampling' in capabilities) {
    client.setRequestHandler('sampling/createMessage', () => {
      answers.sampling++;
      return Promise.resolve({ role: 'assistant' as const, model: 'test-model', content: { type: 'text' as const, text: SAMPLED } });
    });
  }
  if ('elicitation' in capabilities) {
    client.setRequestHandler('elicitation/create', (request) => {
      answers.elicitation++;
      if (request.params.mode === 'url') return Promise.resolve({ action: 'accept' as const });
      return Promise.resolve({ action: 'accept' as const, content: { name: 'Ada from v2' } });
    });
  }
  if ('roots' in capabilities) {
    client.setRequestHandler('roots/list', () => {
      answers.roots++;
      return Promise.resolve({ roots: [ROOT] });
    });
  }
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  return { client, answers };
}

/** A v1 SDK client (2025 revisions) that answers sampling and elicitation. */
async function v1Client(url: string): Promise<{ client: V1Client; answers: Answers }> {
  const answers: Answers = { sampling: 0, elicitation: 0, roots: 0 };
  const client = new V1Client({ name: 'v1', version: '1' }, { capabilities: { sampling: {}, elicitation: { form: {} }, roots: {} } });
  client.setRequestHandler(CreateMessageRequestSchema, () => {
    answers.sampling++;
    return { role: 'assistant', model: 'test-model', content: { type: 'text', text: SAMPLED } };
  });
  client.setRequestHandler(ElicitRequestSchema, () => {
    answers.elicitation++;
    return { action: 'accept', content: { name: 'Ada from v1' } };
  });
  client.setRequestHandler(ListRootsRequestSchema, () => {
    answers.roots++;
    return { roots: [ROOT] };
  });
  await client.connect(new V1Transport(new URL(url)));
  return { client, answers };
}

const text = toolText;

describe('server-initiated requests through the gateway', () => {
  let db: TestDatabase;
  let app: TestApp;
  const children: ChildProcess[] = [];

  const register = (body: { name: string } & Record<string, unknown>) => registerConnected(app.url, body);

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await register({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] });
    const http = await everythingOverHttp('streamableHttp');
    children.push(http.child);
    await register({ name: 'remote', transport: 'streamable_http', url: http.url });
    await register({ name: 'mrtr', transport: 'stdio', command: process.execPath, args: [resolve('test/fixtures/mrtr-upstream.mjs')] });
  });
  after(async () => {
    await app.shutdown('test done');
    for (const child of children) child.kill();
    await db.drop();
  });

  it('v1 client (2025): sampling from a stdio upstream arrives on the session GET stream (fast path) and its answer goes back', async () => {
    const { client, answers } = await v1Client(`${app.url}/mcp`);
    try {
      const result = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hello', maxTokens: 5 } });
      assert.equal(answers.sampling, 1);
      assert.match(text(result), new RegExp(SAMPLED));
    } finally {
      await client.close();
    }
  });

  it('v1 client (2025): sampling arrives on the call’s own response stream when the call streams (progress token)', async () => {
    const { client, answers } = await v1Client(`${app.url}/mcp/everything`);
    try {
      const result = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hello' } }, undefined, { onprogress: () => undefined });
      assert.equal(answers.sampling, 1);
      assert.match(text(result), new RegExp(SAMPLED));
    } finally {
      await client.close();
    }
  });

  it('v1 client (2025): elicitation from a streamable-HTTP upstream (answered on the call’s stream) reaches the client', async () => {
    const { client, answers } = await v1Client(`${app.url}/mcp`);
    try {
      const result = await client.callTool({ name: 'remote__trigger-elicitation-request', arguments: {} });
      assert.equal(answers.elicitation, 1);
      assert.match(text(result), /Ada from v1/);
    } finally {
      await client.close();
    }
  });

  it('v2 client on a 2025 revision: elicitation (form) and roots reach it', async () => {
    const { client, answers } = await v2Client(`${app.url}/mcp/everything`, 'legacy');
    try {
      const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
      assert.equal(answers.elicitation, 1);
      assert.match(text(elicited), /Ada from v2/);
      const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'x' } });
      assert.match(text(sampled), new RegExp(SAMPLED));
      // The upstream's own roots/list at start-up came outside any call and was refused; asked
      // during this call, it reaches this client.
      const roots = await client.callTool({ name: 'get-roots-list', arguments: {} });
      assert.equal(answers.roots, 1);
      assert.match(text(roots), /file:\/\/\/work\/project-x/);
    } finally {
      await client.close();
    }
  });

  it('v2 client on 2026-07-28: sampling and elicitation arrive as input_required results (MRTR) and the retry carries the answers back', async () => {
    const { client, answers } = await v2Client(`${app.url}/mcp`, 'auto');
    try {
      const sampled = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hello' } });
      assert.equal(answers.sampling, 1);
      assert.match(text(sampled), new RegExp(SAMPLED));
      const elicited = await client.callTool({ name: 'remote__trigger-elicitation-request', arguments: {} });
      assert.equal(answers.elicitation, 1);
      assert.match(text(elicited), /Ada from v2/);
      const urlElicited = await client.callTool({ name: 'everything__trigger-url-elicitation', arguments: { url: 'https://example.com/consent' } });
      assert.equal(answers.elicitation, 2, text(urlElicited));
    } finally {
      await client.close();
    }
  });

  it('v2 client on 2026-07-28 through /mcp/<server>: the raw input_required result and its retry', async () => {
    const { client, answers } = await v2Client(`${app.url}/mcp/everything`, 'auto');
    try {
      const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'direct' } });
      assert.equal(answers.sampling, 1);
      assert.match(text(sampled), new RegExp(SAMPLED));
    } finally {
      await client.close();
    }
  });

  it('a client without the capability: the upstream request is refused per call (-32021) and the tool reports it', async () => {
    const { client } = await v2Client(`${app.url}/mcp`, 'auto', { elicitation: { form: {} } });
    try {
      const result = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hello' } });
      assert.doesNotMatch(text(result), new RegExp(SAMPLED));
      assert.match(text(result), /does not support sampling\/createMessage|-32021/);
    } finally {
      await client.close();
    }
  });

  it('a 2026-07-28 retry with an unknown requestState is refused with -32602', async () => {
    const res = await fetch(`${app.url}/mcp`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        'mcp-protocol-version': '2026-07-28',
        'mcp-method': 'tools/call',
        'mcp-name': 'everything__echo',
      },
      body: JSON.stringify({
        jsonrpc: '2.0',
        id: 7,
        method: 'tools/call',
        params: {
          name: 'everything__echo',
          arguments: { message: 'x' },
          requestState: 'no-such-state',
          inputResponses: {},
          _meta: {
            'io.modelcontextprotocol/protocolVersion': '2026-07-28',
            'io.modelcontextprotocol/clientCapabilities': ALL_CAPS,
            'io.modelcontextprotocol/clientInfo': { name: 'raw', version: '1' },
          },
        },
      }),
    });
    const body = (await res.json()) as { error?: { code: number; message: string } };
    assert.equal(body.error?.code, -32602, JSON.stringify(body));
    assert.match(body.error.message, /requestState/);
  });

  it('a 2026-07-28 upstream’s input_required reaches clients of both eras: a 2025 client as a request, a 2026 client as input_required', async () => {
    const v1 = await v1Client(`${app.url}/mcp`);
    const modern = await v2Client(`${app.url}/mcp/mrtr`, 'auto');
    try {
      const legacyAnswer = await v1.client.callTool({ name: 'mrtr__confirm', arguments: { what: 'deploy' } });
      assert.equal(v1.answers.elicitation, 1);
      assert.match(text(legacyAnswer), /confirmed deploy by Ada from v1/);
      const modernAnswer = await modern.client.callTool({ name: 'confirm', arguments: { what: 'release' } });
      assert.equal(modern.answers.elicitation, 1);
      assert.match(text(modernAnswer), /confirmed release by Ada from v2/);
    } finally {
      await v1.client.close();
      await modern.client.close();
    }
  });
});
