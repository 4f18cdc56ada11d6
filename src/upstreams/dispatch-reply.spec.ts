import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Pool } from 'undici';
import type { EventSourceMessage } from 'eventsource-parser';
import { Cancellation } from './cancellation.js';
import { DRAIN_LIMIT, PostHandler, SseBody, type BodyUse, type Reply } from './dispatch-reply.js';
import { UpstreamResponseTooLargeError } from './sse-reader.js';

const LIMITS = { maxEventChars: 1024, maxResponseBytes: 64 * 1024 };

describe('Cancellation', () => {
  it('aborts what it holds once, with the reason; later holds are aborted at once; released ones are not', () => {
    const seen: unknown[] = [];
    const call = new Cancellation();
    const released = { abort: (r: unknown) => seen.push(['released', r]) };
    call.hold(released);
    call.release(released);
    const held = { abort: (r: unknown) => seen.push(['held', r]) };
    call.hold(held);
    const reason = new Error('why');
    call.abort(reason);
    call.abort(new Error('again'));
    call.hold({ abort: (r: unknown) => seen.push(['late', r]) });
    assert.deepEqual(seen, [['held', reason], ['late', reason]]);
    assert.equal(call.reason, reason);
  });

  it('nests (an attempt under its call), makes its signal on demand, and defaults the reason to an AbortError', () => {
    const outer = new Cancellation();
    const inner = new Cancellation();
    outer.hold(inner);
    const early = outer.signal;
    outer.abort();
    assert.equal(inner.aborted, true);
    assert.ok(inner.reason instanceof DOMException && inner.reason.name === 'AbortError');
    assert.equal(early.aborted, true);
    assert.equal(early.reason, outer.reason);
    const late = new Cancellation();
    late.abort('a string');
    assert.equal(late.signal.aborted, true, 'a signal asked for after the abort is aborted too');
    assert.equal(late.signal.reason, 'a string');
  });
});

describe('PostHandler (undici dispatch)', () => {
  let serve: (req: IncomingMessage, res: ServerResponse) => void = () => undefined;
  let received = 0;
  const server = createServer((req, res) => {
    received++;
    req.resume();
    serve(req, res);
  });
  let pool: Pool;

  before(async () => {
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: 2 });
  });
  after(async () => {
    await pool.close();
    server.closeAllConnections();
    server.close();
  });

  const post = (use: BodyUse = 'text', call = new Cancellation(), limits = LIMITS): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const handler = new PostHandler(limits, () => use, call, resolve, reject);
      pool.dispatch({ method: 'POST', path: '/', headers: { 'content-type': 'application/json' }, body: '{}' }, handler);
    });
  /** Writes `bytes` in `size`-byte pieces, each flushed on its own. */
  const inPieces = (bytes: Buffer, size: number) => (_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    let at = 0;
    const next = () => {
      if (at >= bytes.length) return res.end();
      res.write(bytes.subarray(at, (at += size)), () => setImmediate(next));
    };
    next();
  };

  it('reads a whole body as UTF-8: characters split across chunks kept whole, invalid bytes as the decoder puts them, an empty body', async () => {
    serve = inPieces(Buffer.from('{"t":"ü😀"}', 'utf8'), 1);
    const reply = await post();
    assert.equal(reply.statusCode, 200);
    assert.equal(reply.headers['content-type'], 'application/json');
    assert.equal(reply.text, '{"t":"ü😀"}');
    const invalid = Buffer.from([0x7b, 0xff, 0xe2, 0x82, 0x7d]); // {, a stray byte, a truncated €, }
    serve = inPieces(invalid, 2);
    assert.equal((await post()).text, new TextDecoder().decode(invalid));
    serve = (_req, res) => res.end();
    assert.equal((await post()).text, '');
  });

  it('fails a body past maxResponseBytes with UpstreamResponseTooLargeError and drops the connection', async () => {
    let closed = false;
    serve = (_req, res) => {
      res.writeHead(200);
      res.on('close', () => (closed = true));
      const chunk = Buffer.alloc(16 * 1024, 'x');
      const write = () => {
        if (!res.destroyed) res.write(chunk, () => setImmediate(write));
      };
      write();
    };
    await assert.rejects(post(), (e: Error) => e instanceof UpstreamResponseTooLargeError && /exceeded 65536 bytes \(GATEHOUSE_HTTP_MAX_RESPONSE_BYTES\)/.test(e.message));
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, true);
  });

  it("fails with undici's error when the upstream drops the connection mid-body", async () => {
    serve = (_req, res) => {
      res.writeHead(200, { 'content-length': '100' });
      res.write('{"partial"', () => res.socket?.destroy());
    };
    await assert.rejects(post(), /other side closed|closed/);
  });

  it('drains a body whose status says it all, dropping the connection past DRAIN_LIMIT instead of reading on', async () => {
    serve = (_req, res) => {
      res.writeHead(429, { 'retry-after': '1' });
      res.end('slow down');
    };
    const small = await post('drain');
    assert.equal(small.statusCode, 429);
    assert.equal(small.headers['retry-after'], '1');
    assert.equal(small.text, undefined);
    for (const declared of [true, false]) {
      serve = (_req, res) => {
        res.writeHead(503, declared ? { 'content-length': String(DRAIN_LIMIT * 4) } : {});
        const write = () => {
          if (!res.destroyed) res.write(Buffer.alloc(16 * 1024), () => setImmediate(write));
        };
        write();
      };
      assert.equal((await post('drain')).statusCode, 503, declared ? 'content-length over the limit' : 'chunked past the limit');
    }
  });

  it('aborts with the reason: before the request is sent (nothing reaches the upstream) and while the body streams', async () => {
    const before = received;
    const early = new Cancellation();
    early.abort(new Error('cancelled early'));
    await assert.rejects(post('text', early), /cancelled early/);
    assert.equal(received, before);
    serve = (_req, res) => {
      res.writeHead(200);
      res.write('{');
    };
    const call = new Cancellation();
    const reading = post('text', call);
    setTimeout(() => call.abort(new Error('cancelled late')), 50);
    await assert.rejects(reading, /cancelled late/);
  });

  it('resolves an event stream at its headers, events parsed as they arrive, the rest dropped once the consumer has its answer', async () => {
    let closed = false;
    serve = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.on('close', () => (closed = true));
      res.write('data: 1\n\n', () => setTimeout(() => res.write('data: 2\r\n\r\ndata: 3\n\n'), 20));
    };
    const reply = await post('events');
    assert.ok(reply.events);
    const seen: string[] = [];
    const done = await new Promise<string>((resolve) =>
      reply.events!.consume(
        (event) => {
          seen.push(event.data);
          if (event.data === '2') resolve('answered');
          return event.data === '2';
        },
        (error) => resolve(`done ${String(error)}`),
      ),
    );
    assert.equal(done, 'answered');
    assert.deepEqual(seen, ['1', '2'], 'nothing after the answer');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(closed, true);
  });
});

describe('SseBody', () => {
  const consumed = (body: SseBody, stopAt?: string) =>
    new Promise<{ events: string[]; error: unknown; stopped: boolean }>((resolve) => {
      const events: string[] = [];
      body.consume(
        (event: EventSourceMessage) => {
          events.push(event.data);
          if (event.data === stopAt) {
            resolve({ events, error: undefined, stopped: true });
            return true;
          }
          return false;
        },
        (error) => resolve({ events, error, stopped: false }),
      );
    });

  it('parses chunks that came before the consumer, then the rest; the end without an answer reports no error', async () => {
    const body = new SseBody(LIMITS, () => assert.fail('not dropped'));
    body.push(Buffer.from('data: a\n\nda'));
    const result = consumed(body);
    body.push(Buffer.from('ta: b\n\n'));
    body.end();
    assert.deepEqual(await result, { events: ['a', 'b'], error: undefined, stopped: false });
  });

  it('reports a failure or an end that came before the consumer', async () => {
    const failed = new SseBody(LIMITS, () => undefined);
    failed.push(Buffer.from('data: a\n\n'));
    failed.fail(new Error('socket closed'));
    const result = await consumed(failed);
    assert.deepEqual(result.events, ['a']);
    assert.match(String(result.error), /socket closed/);
    const ended = new SseBody(LIMITS, () => undefined);
    ended.push(Buffer.from('data: a\r\r'));
    ended.end();
    assert.deepEqual(await consumed(ended), { events: ['a'], error: undefined, stopped: false }, 'a lone CR at the end ends the last event');
  });

  it('stops at an event past maxEventChars (dropping the request) before handing on that chunk’s events', async () => {
    let dropped = 0;
    const body = new SseBody(LIMITS, () => dropped++);
    const result = consumed(body);
    body.push(Buffer.from(`data: a\n\ndata: ${'x'.repeat(2000)}`));
    const { events, error } = await result;
    assert.deepEqual(events, []);
    assert.ok(error instanceof UpstreamResponseTooLargeError);
    assert.equal(dropped, 1);
  });

  it('ends with what the consumer threw, dropping the request; nothing is handed on after the consumer is done', async () => {
    let dropped = 0;
    const body = new SseBody(LIMITS, () => dropped++);
    const seen: string[] = [];
    const error = new Promise<unknown>((resolve) =>
      body.consume((event) => {
        seen.push(event.data);
        throw new SyntaxError('not JSON');
      }, resolve),
    );
    body.push(Buffer.from('data: a\n\ndata: b\n\n'));
    assert.ok((await error) instanceof SyntaxError);
    body.push(Buffer.from('data: c\n\n'));
    body.end();
    assert.deepEqual(seen, ['a']);
    assert.equal(dropped, 1);
  });
});

describe('HttpForwarder after close()', () => {
  it('sends nothing more and opens no new pool: a request fails with "closed", the upstream sees only what came before', async () => {
    const { HttpForwarder } = await import('./http-forwarder.js');
    let posts = 0;
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      posts++;
      req.resume();
      req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":1,"result":{"ok":true}}'));
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const url = new URL(`http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`);
      const forwarder = new HttpForwarder(url, {}, '2025-06-18', 'sid');
      assert.deepEqual(await forwarder.request('tools/call', { name: 'x' }, { timeoutMs: 5_000 }), { ok: true });
      await forwarder.close();
      await assert.rejects(forwarder.request('tools/call', { name: 'x' }, { timeoutMs: 5_000 }), /the connection to this server is closed/);
      assert.equal((forwarder as unknown as { pools: Map<string, unknown> }).pools.size, 0, 'no pool made after close()');
      assert.equal(posts, 1);
    } finally {
      server.close();
    }
  });
});
