import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ACCEPT, ENVELOPE, legacySession, MODERN, rpc } from '../support/mcp-raw.js';
import { registerConnected } from '../support/upstreams.js';

const FIXTURE = resolve('test/fixtures/paged-upstream.mjs');

/** POSTs `text` as it is; the answer's raw text (JSON or SSE). */
async function post(url: string, text: string, headers: Record<string, string>): Promise<{ status: number; text: string }> {
  const res = await fetch(url, { method: 'POST', headers, body: text });
  return { status: res.status, text: await res.text() };
}

/** Ids whose JSON.parse value differs from what was sent. */
const ODD_IDS = ['9007199254740993', '12345678901234567890123', '1e400', '-9007199254740995', '0.1000000000000000000000001'];

describe('JSON-RPC ids come back exactly as sent; batches as each revision defines them', () => {
  let db: TestDatabase;
  let app: TestApp;

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    await registerConnected(app.url, { name: 'paged', transport: 'stdio', command: process.execPath, args: [FIXTURE], env: { PAGES: '1' } });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  for (const path of ['/mcp', '/mcp/paged']) {
    it(`${path}: ids JSON.parse would change are answered as sent (legacy fast path, SDK path, modern)`, async () => {
      const headers = await legacySession(`${app.url}${path}`);
      const tool = path === '/mcp' ? 'paged__t0000' : 't0000';
      for (const id of ODD_IDS) {
        for (const body of [
          `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"${tool}","arguments":{}}}`,
          `{"jsonrpc":"2.0","method":"prompts/list","id": ${id} }`,
        ]) {
          const r = await post(`${app.url}${path}`, body, headers);
          assert.equal(r.status, 200, r.text);
          assert.match(r.text, new RegExp(`"id":${id.replace(/[.+-]/g, '\\$&')}[,}]`), `${body} → ${r.text}`);
          assert.doesNotMatch(r.text, /"error"/, r.text);
        }
        const modern = `{"jsonrpc":"2.0","id":${id},"method":"tools/list","params":{"_meta":${JSON.stringify(ENVELOPE)}}}`;
        const m = await post(`${app.url}${path}`, modern, { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/list' });
        assert.equal(m.status, 200, m.text);
        assert.match(m.text, new RegExp(`"id":${id.replace(/[.+-]/g, '\\$&')}[,}]`), m.text);
      }
    });
  }

  it('refuses a batch on 2025-06-18 and later (batches were removed there) with -32600', async () => {
    const headers = await legacySession(`${app.url}/mcp`);
    const r = await rpc(`${app.url}/mcp`, [{ jsonrpc: '2.0', id: 1, method: 'ping' }, { jsonrpc: '2.0', id: 2, method: 'ping' }], headers);
    assert.equal(r.status, 400);
    assert.equal(r.body?.error?.code, -32600);
    assert.match(r.body?.error?.message ?? '', /batches.*2025-06-18/);
  });

  it('answers every request of a 2025-03-26 batch, also two with the same id', async () => {
    const init = await rpc(
      `${app.url}/mcp`,
      { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'batcher', version: '1' } } },
      { 'content-type': 'application/json', accept: ACCEPT },
    );
    assert.equal(init.status, 200);
    const headers = { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': '2025-03-26', 'mcp-session-id': init.headers.get('mcp-session-id')! };
    const r = await post(
      `${app.url}/mcp`,
      '[{"jsonrpc":"2.0","id":5,"method":"ping"},{"jsonrpc":"2.0","id":5,"method":"prompts/list"},{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}]',
      headers,
    );
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text.match(/"id":5[,}]/g)?.length, 2, r.text);
    assert.match(r.text, /"prompts":/);
    assert.match(r.text, /"id":9007199254740993[,}]/);
  });
});
