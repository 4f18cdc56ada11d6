import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING_STDIO, registerConnected } from '../support/upstreams.js';
import { ACCEPT, ENVELOPE, LEGACY, MODERN } from '../support/mcp-raw.js';

/**
 * Review probe (issue 12, round 2): whole tools/list answers are written from cached UTF-8
 * blocks that are REUSED once a response was handed to the socket (era.ts responseAnswer /
 * releaseAnswer). Whatever the interleaving — principals whose policies narrow the list
 * differently, both eras, ids of every shape (long ones past the head room, ids JSON.parse
 * would change), pipelined requests on one connection, a client that does not read, a client
 * that leaves mid-answer — every client gets exactly the bytes a lone request of its own gets,
 * with its own id.
 */

const ADMIN_KEY = 'lists-reuse-static-admin-key-0123456789';
const ENV = { MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: ADMIN_KEY, HTTP_ALLOWED_HOSTS: '127.0.0.1,localhost' };
const admin = { 'x-api-key': ADMIN_KEY };

/** Raw id texts as a client writes them: numbers, strings, a long one (its head exceeds the block's head room), non-ASCII, ids JSON.parse changes. */
const RAW_IDS = ['7', '"s"', JSON.stringify('x'.repeat(150)), JSON.stringify('é✓😀'), '12345678901234567890', '1.0', '1e2', '-0', '0.1', '42', JSON.stringify('y'.repeat(60))];

interface Who {
  name: string;
  key: string;
  /** Headers per era for a tools/list (legacy: in its own session). */
  headers: Record<'legacy' | 'modern', Record<string, string>>;
  /** The whole answer body to a lone request with id 0, per era. */
  baseline: Record<'legacy' | 'modern', string>;
}

async function post(url: string, headers: Record<string, string>, body: string): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(url, { method: 'POST', headers, body });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

const listBody = (era: 'legacy' | 'modern', rawId: string) =>
  era === 'legacy'
    ? `{"jsonrpc":"2.0","id":${rawId},"method":"tools/list"}`
    : `{"jsonrpc":"2.0","id":${rawId},"method":"tools/list","params":{"_meta":${JSON.stringify(ENVELOPE)}}}`;

/** The id as answered (json-rpc-ids.ts): a number that is not a safe integer as sent, anything else as parsed. */
const answeredId = (rawId: string) => {
  const id: unknown = JSON.parse(rawId);
  return typeof id === 'number' && !Number.isSafeInteger(id) ? rawId : JSON.stringify(id);
};

/** The answer `who` must get for `rawId`: its lone answer with its own id. */
const expected = (who: Who, era: 'legacy' | 'modern', rawId: string) => {
  const base = who.baseline[era];
  assert.ok(base.startsWith('{"jsonrpc":"2.0","id":0,'), base.slice(0, 80));
  return `{"jsonrpc":"2.0","id":${answeredId(rawId)},${base.slice('{"jsonrpc":"2.0","id":0,'.length)}`;
};

/** Writes `requests` pipelined on one raw connection; reads the answers (Content-Length framed) after `pauseMs`, or stops reading after `abortAfter` bytes. */
function pipelined(port: number, requests: string[], opts: { pauseMs?: number; abortAfter?: number } = {}): Promise<{ status: number; body: string }[]> {
  return new Promise((resolve, reject) => {
    const socket: Socket = connect(port, '127.0.0.1');
    let buffered = Buffer.alloc(0);
    const answers: { status: number; body: string }[] = [];
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.pause();
      socket.write(requests.join(''));
      setTimeout(() => socket.resume(), opts.pauseMs ?? 0);
    });
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      if (opts.abortAfter !== undefined && buffered.length >= opts.abortAfter) {
        socket.destroy();
        resolve(answers);
        return;
      }
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) break;
        const head = buffered.subarray(0, end).toString('latin1');
        const length = /\r\ncontent-length: *(\d+)/i.exec(head);
        if (!length) return reject(new Error(`no content-length: ${head}`));
        const total = end + 4 + Number(length[1]);
        if (buffered.length < total) break;
        answers.push({ status: Number(head.split(' ')[1]), body: buffered.subarray(end + 4, total).toString('utf8') });
        buffered = buffered.subarray(total);
      }
      if (answers.length === requests.length) {
        socket.end();
        resolve(answers);
      }
    });
  });
}

const rawRequest = (port: number, headers: Record<string, string>, body: string) =>
  `POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

describe('tools/list from reused byte blocks: every client gets its own answer', () => {
  let db: TestDatabase;
  let app: TestApp;
  let port: number;
  const people: Who[] = [];

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, ENV);
    port = Number(new URL(app.url).port);
    await registerConnected(app.url, EVERYTHING_STDIO, admin);
    // Four principals: one sees every tool (the catalog's own array), three see lists narrowed differently.
    const denies: (string[] | undefined)[] = [undefined, ['everything__get-*'], ['everything__echo', 'everything__*sum*'], ['everything__*']];
    for (const [i, targets] of denies.entries()) {
      const minted = await post(`${app.url}/api/v1/api-keys`, { ...admin, 'content-type': 'application/json' }, JSON.stringify({ name: `p${i}`, role: 'member' }));
      assert.equal(minted.status, 201, minted.text);
      const { id, key } = JSON.parse(minted.text) as { id: string; key: string };
      if (targets) {
        const policy = await post(`${app.url}/api/v1/policies`, { ...admin, 'content-type': 'application/json' }, JSON.stringify({ subject: { apiKeyId: id }, effect: 'deny', operations: ['tools/call'], targets }));
        assert.equal(policy.status, 201, policy.text);
      }
      const init = await post(
        `${app.url}/mcp`,
        { 'x-api-key': key, 'content-type': 'application/json', accept: ACCEPT },
        JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: `p${i}`, version: '1' } } }),
      );
      assert.equal(init.status, 200, init.text);
      const headers = {
        legacy: { 'x-api-key': key, 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id')! },
        modern: { 'x-api-key': key, 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': MODERN, 'mcp-method': 'tools/list' },
      };
      const who: Who = { name: `p${i}`, key, headers, baseline: { legacy: '', modern: '' } };
      for (const era of ['legacy', 'modern'] as const) {
        const lone = await post(`${app.url}/mcp`, headers[era], listBody(era, '0'));
        assert.equal(lone.status, 200, lone.text);
        assert.match(lone.headers.get('content-type') ?? '', /^application\/json/);
        who.baseline[era] = lone.text;
      }
      people.push(who);
    }
    const counts = people.map((p) => (JSON.parse(p.baseline.legacy) as { result: { tools: unknown[] } }).result.tools.length);
    assert.equal(new Set(counts).size, 4, `four different lists: ${counts.join(', ')}`);
    assert.equal(counts[3], 0);
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('concurrent clients of different principals, both eras, ids of every shape', async () => {
    const jobs: Promise<void>[] = [];
    for (let round = 0; round < 3; round++) {
      for (const who of people) {
        for (const era of ['legacy', 'modern'] as const) {
          for (const rawId of RAW_IDS) {
            jobs.push(
              post(`${app.url}/mcp`, who.headers[era], listBody(era, rawId)).then((res) => {
                assert.equal(res.status, 200);
                assert.equal(res.text, expected(who, era, rawId), `${who.name} ${era} id ${rawId}`);
              }),
            );
          }
        }
      }
    }
    await Promise.all(jobs);
  });

  it('pipelined on one connection, principals alternating, a client not reading, another leaving mid-answer, with traffic alongside', async () => {
    const plan: { who: Who; era: 'legacy' | 'modern'; rawId: string }[] = [];
    for (let i = 0; i < 1200; i++) {
      plan.push({ who: people[i % people.length], era: i % 3 === 0 ? 'modern' : 'legacy', rawId: RAW_IDS[i % RAW_IDS.length] });
    }
    const requests = plan.map((p) => rawRequest(port, p.who.headers[p.era], listBody(p.era, p.rawId)));
    const leaving = [0, 1, 2].map(() => pipelined(port, requests, { abortAfter: 20_000 }));
    const slow = pipelined(port, requests, { pauseMs: 400 });
    const quick = pipelined(port, requests);
    const alongside: Promise<void>[] = [];
    for (let round = 0; round < 4; round++) {
      for (const who of people) {
        const rawId = `${1000 + round}`;
        alongside.push(
          post(`${app.url}/mcp`, who.headers.modern, listBody('modern', rawId)).then((res) => assert.equal(res.text, expected(who, 'modern', rawId))),
        );
      }
    }
    await Promise.all([...leaving, ...alongside]);
    for (const answers of [await slow, await quick]) {
      assert.equal(answers.length, plan.length);
      answers.forEach((answer, i) => {
        assert.equal(answer.status, 200);
        assert.equal(answer.body, expected(plan[i].who, plan[i].era, plan[i].rawId), `answer ${i}: ${plan[i].who.name} ${plan[i].era} id ${plan[i].rawId}`);
      });
    }
    // And afterwards, lone requests still get exactly their own answer.
    for (const who of people) {
      for (const era of ['legacy', 'modern'] as const) assert.equal((await post(`${app.url}/mcp`, who.headers[era], listBody(era, '3'))).text, expected(who, era, '3'));
    }
  });
});
