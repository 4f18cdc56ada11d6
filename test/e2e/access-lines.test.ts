import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HttpUpstream } from '../support/http-upstream.js';
import { ACCEPT, LEGACY, legacyRequest, modernRequest, rpc } from '../support/mcp-raw.js';
import { until } from '../support/until.js';
import { registerConnected } from '../support/upstreams.js';

const KEY = 'access-lines-key-0123456789abcdefghij';
const auth = { 'x-api-key': KEY };

/**
 * One access line per /mcp request (served by the MCP lane), whatever its end: answered, or its
 * client gone mid-call after sending the whole request (was: no line at all — Fastify's
 * onRequestAbort fires only while the request is still being received).
 */
describe('access lines of /mcp calls', () => {
  let db: TestDatabase;
  let app: TestApp;
  let upstream: HttpUpstream;
  before(async () => {
    db = await createTestDatabase();
    upstream = await HttpUpstream.start();
    upstream.behaviour.sse = false;
    app = await startTestApp(db.url, { MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: KEY });
    await registerConnected(app.url, { name: 'remote', transport: 'streamable_http', url: upstream.url }, auth);
  });
  after(async () => {
    await app.shutdown('test done');
    await upstream.close();
    await db.drop();
  });

  const linesOf = (id: string) => app.logs.lines.filter((l) => l.requestId === id && typeof l.msg === 'string' && l.msg.startsWith('request '));

  it('a call answered: one line, its status and principal', async () => {
    const { body, headers } = modernRequest('tools/call', { name: 'remote__echo', arguments: { text: 'hi' } });
    const res = await fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...headers, ...auth, 'x-request-id': 'al-ok' }, body: JSON.stringify(body) });
    assert.equal(res.status, 200, await res.text());
    await until(() => linesOf('al-ok').length > 0);
    await new Promise((r) => setTimeout(r, 50));
    const lines = linesOf('al-ok');
    assert.equal(lines.length, 1, JSON.stringify(lines));
    assert.deepEqual(lines[0].res, { statusCode: 200 });
    assert.equal(typeof lines[0].principalId, 'string');
  });

  for (const era of ['modern', 'legacy'] as const) {
    it(`a ${era} call whose client leaves mid-call: exactly one 'request aborted' line, with the principal`, async () => {
      const id = `al-abort-${era}`;
      const url = `${app.url}/mcp`;
      let body: unknown;
      let headers: Record<string, string>;
      if (era === 'modern') ({ body, headers } = modernRequest('tools/call', { name: 'remote__wait', arguments: { ms: 300 } }, 7));
      else {
        const init = await rpc(url, legacyRequest('initialize', { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'al', version: '1' } }, 0), { 'content-type': 'application/json', accept: ACCEPT, ...auth });
        assert.equal(init.status, 200);
        headers = { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id')! };
        body = legacyRequest('tools/call', { name: 'remote__wait', arguments: { ms: 300 } }, 7);
      }
      const before = upstream.calls('wait').length;
      const abort = new AbortController();
      const sent = fetch(url, { method: 'POST', headers: { ...headers, ...auth, 'x-request-id': id }, body: JSON.stringify(body), signal: abort.signal }).catch(() => undefined);
      await until(() => upstream.calls('wait').length > before);
      abort.abort();
      await sent;
      await until(() => linesOf(id).length > 0, 2_000, 'an access line');
      // The legacy call runs on upstream (300 ms) and its answer finds the connection gone: still one line.
      await new Promise((r) => setTimeout(r, 500));
      const lines = linesOf(id);
      assert.equal(lines.length, 1, JSON.stringify(lines));
      assert.equal(lines[0].msg, 'request aborted');
      assert.equal(lines[0].res, undefined);
      assert.equal(typeof lines[0].principalId, 'string');
    });
  }
});
