import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readSseEvents, UpstreamResponseTooLargeError } from './sse-reader.js';

const LIMITS = { maxEventChars: 1024, maxResponseBytes: 64 * 1024 };

/** `text` as UTF-8, cut into `size`-byte chunks (cutting characters apart), counting the chunks pulled. */
function chunked(text: string, size: number): AsyncIterable<Uint8Array> & { pulled: number } {
  const bytes = Buffer.from(text, 'utf8');
  const body = {
    pulled: 0,
    async *[Symbol.asyncIterator]() {
      for (let at = 0; at < bytes.length; at += size) {
        body.pulled++;
        yield await Promise.resolve(bytes.subarray(at, at + size));
      }
    },
  };
  return body;
}

async function events(body: AsyncIterable<Uint8Array>, limits = LIMITS) {
  const out = [];
  for await (const e of readSseEvents(body, limits)) out.push(e);
  return out;
}

describe('readSseEvents', () => {
  for (const [name, eol] of [['LF', '\n'], ['CRLF', '\r\n'], ['CR', '\r']] as const) {
    it(`frames events ended by ${name}, in chunks of any size`, async () => {
      const text = `: hello${eol}event: message${eol}id: 7${eol}data: {"a":1}${eol}${eol}data: line1${eol}data: line2${eol}${eol}`;
      for (const size of [1, 2, 3, 1000]) {
        const got = await events(chunked(text, size));
        assert.deepEqual(got, [
          { id: '7', event: 'message', data: '{"a":1}' },
          { id: undefined, event: undefined, data: 'line1\nline2' },
        ], `chunk size ${size}`);
      }
    });
  }

  it('keeps a multi-byte character whole when a chunk boundary cuts it', async () => {
    const data = 'é€😀'.repeat(50);
    for (const size of [1, 2, 3, 5]) {
      const [event] = await events(chunked(`data: ${data}\r\n\r\n`, size));
      assert.equal(event.data, data, `chunk size ${size}`);
      assert.ok(!event.data.includes('\uFFFD'));
    }
  });

  it('discards an event the stream ends before its blank line (HTML standard §9.2.6)', async () => {
    assert.deepEqual(await events(chunked('data: a\n\ndata: b', 4)), [{ id: undefined, event: undefined, data: 'a' }]);
  });

  it('refuses an event that grows past maxEventChars, without reading the rest', async () => {
    const body = chunked(`data: ${'x'.repeat(10_000)}`, 100);
    await assert.rejects(events(body), (e: Error) => e instanceof UpstreamResponseTooLargeError && /exceeded 1024 characters \(GATEHOUSE_HTTP_MAX_EVENT_SIZE\)/.test(e.message));
    assert.ok(body.pulled <= 12, `read ${body.pulled} chunks`);
  });

  it('refuses a body past maxResponseBytes, however small its events', async () => {
    const body = chunked('data: {}\n\n'.repeat(10_000), 1000);
    await assert.rejects(events(body), /exceeded 65536 bytes \(GATEHOUSE_HTTP_MAX_RESPONSE_BYTES\)/);
    assert.ok(body.pulled <= 66, `read ${body.pulled} chunks`);
  });

  it('pulls a chunk only when the consumer asks for the next event (backpressure)', async () => {
    const body = chunked('data: 1\n\n'.repeat(100), 9);
    const iterator = readSseEvents(body, LIMITS)[Symbol.asyncIterator]();
    await iterator.next();
    await iterator.next();
    assert.equal(body.pulled, 2);
    await iterator.return?.(undefined);
  });

  it('is linear in the body size (8× the event in 1 KB chunks: far under 64× the time)', async () => {
    const limits = { maxEventChars: 16_000_000, maxResponseBytes: 16_000_000 };
    const time = async (size: number) => {
      const started = performance.now();
      const [event] = await events(chunked(`data: ${'y'.repeat(size)}\n\n`, 1024), limits);
      assert.equal(event.data.length, size);
      return performance.now() - started;
    };
    await time(100_000); // warm-up
    const small = await time(1_000_000);
    const large = await time(8_000_000);
    // Linear: ~8×; quadratic (rescanning the buffer per chunk): ~64×. Generous for a loaded machine.
    assert.ok(large < 24 * small + 100, `1 MB: ${small.toFixed(0)} ms, 8 MB: ${large.toFixed(0)} ms`);
  });
});
