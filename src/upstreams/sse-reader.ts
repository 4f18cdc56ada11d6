import { Readable } from 'node:stream';
import { createParser, type EventSourceMessage, type ParseError } from 'eventsource-parser';
import { DescribedError } from './error-description.js';

/** Size caps on what one HTTP upstream response may make Gatehouse hold (see docs/configuration.md). */
export interface ResponseLimits {
  /**
   * Most characters one SSE event may buffer before it ends (its unterminated line plus its
   * `data:` lines so far; GATEHOUSE_HTTP_MAX_EVENT_SIZE). A UTF-8 byte decodes to at most one
   * character, so this also bounds the event's bytes from below.
   */
  maxEventChars: number;
  /** Most bytes one response body may carry in total, all its events together (GATEHOUSE_HTTP_MAX_RESPONSE_BYTES). */
  maxResponseBytes: number;
  /** What set these limits, as errors name it; default the two settings (a server's `maxMessageBytes` names itself). */
  setBy?: string;
}

/** Defaults sized for real use: a 32 Mi-character event, 64 MiB per response. */
export const DEFAULT_RESPONSE_LIMITS: ResponseLimits = { maxEventChars: 32 * 1024 * 1024, maxResponseBytes: 64 * 1024 * 1024 };

/** An upstream response went over one of the {@link ResponseLimits}; reading stopped there and the request was dropped. */
export class UpstreamResponseTooLargeError extends DescribedError {}

/**
 * Decodes a response body as UTF-8 as it streams, a multi-byte character split across chunks
 * kept whole (`TextDecoder` with `stream: true`; invalid bytes become U+FFFD, never an error).
 * Counts the body's bytes against `maxResponseBytes` and throws
 * {@link UpstreamResponseTooLargeError} the moment they go over, before decoding the chunk.
 *
 * Backpressure: a chunk is pulled from `body` only when the consumer asks for the next piece
 * of text, so a slow consumer stops undici reading the socket (its body stream pauses past its
 * high-water mark and TCP flow control reaches the upstream).
 */
export async function* decodeUtf8(body: AsyncIterable<Uint8Array>, limits: Pick<ResponseLimits, 'maxResponseBytes' | 'setBy'>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8');
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.byteLength;
    if (bytes > limits.maxResponseBytes) {
      throw new UpstreamResponseTooLargeError(`the upstream's response exceeded ${limits.maxResponseBytes} bytes (${limits.setBy ?? 'GATEHOUSE_HTTP_MAX_RESPONSE_BYTES'})`);
    }
    const text = decoder.decode(chunk, { stream: true });
    if (text) yield text;
  }
  const rest = decoder.decode();
  if (rest) yield rest;
}

/**
 * A whole (non-streamed) response body as text, within `maxResponseBytes` (see {@link decodeUtf8}:
 * the same decoding, cap and error). A Node `Readable` (undici's response body) is read through
 * its `data` events and decoded once at the end: the async iterator and generator of the general
 * path cost several promises per chunk on every forwarded `tools/call` (docs/benchmarks.md,
 * issue 12). Past the cap the body is destroyed (undici then releases the socket); a body that
 * errors or closes before its end rejects, as iterating it would.
 */
export function readText(body: AsyncIterable<Uint8Array>, limits: Pick<ResponseLimits, 'maxResponseBytes' | 'setBy'>): Promise<string> {
  if (!(body instanceof Readable)) return readTextIterating(body, limits);
  const prematureClose = () => Object.assign(new Error('Premature close'), { code: 'ERR_STREAM_PREMATURE_CLOSE' });
  if (body.destroyed) {
    // Its 'error' event may still be on its way: heard here, so it is not an uncaught one.
    body.on('error', () => undefined);
    return Promise.reject(body.errored ?? prematureClose());
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const done = (error?: Error, text?: string) => {
      body.off('data', onData).off('end', onEnd).off('error', onError).off('close', onClose);
      if (error) reject(error);
      else resolve(text!);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.byteLength;
      if (bytes > limits.maxResponseBytes) {
        done(new UpstreamResponseTooLargeError(`the upstream's response exceeded ${limits.maxResponseBytes} bytes (${limits.setBy ?? 'GATEHOUSE_HTTP_MAX_RESPONSE_BYTES'})`));
        body.destroy();
        return;
      }
      chunks.push(chunk);
    };
    // TextDecoder over the whole body gives what the streaming decode gives chunk by chunk.
    const onEnd = () => done(undefined, new TextDecoder('utf-8').decode(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    const onError = (error: Error) => done(error);
    const onClose = () => done(prematureClose());
    body.on('data', onData).once('end', onEnd).once('error', onError).once('close', onClose);
  });
}

async function readTextIterating(body: AsyncIterable<Uint8Array>, limits: Pick<ResponseLimits, 'maxResponseBytes' | 'setBy'>): Promise<string> {
  const parts: string[] = [];
  for await (const text of decodeUtf8(body, limits)) parts.push(text);
  return parts.join('');
}

/**
 * The events of a `text/event-stream` body, in order, as they complete. Framing is the HTML
 * Living Standard's "Server-sent events" parsing (§9.2.6): lines end in CRLF, LF or a lone CR
 * (the Python SDK frames with CRLF), a leading BOM is dropped, multi-line `data:` is joined
 * with LF, an event without a terminating blank line at the end of the stream is discarded.
 * Parsing is `eventsource-parser` (linear in the body's size), over {@link decodeUtf8}.
 *
 * Memory is bounded by `limits`: an event still open after `maxEventChars` characters, or a
 * body past `maxResponseBytes`, throws {@link UpstreamResponseTooLargeError}; the caller
 * dropping the request (ending the iteration) releases the socket.
 */
export async function* readSseEvents(body: AsyncIterable<Uint8Array>, limits: ResponseLimits): AsyncGenerator<EventSourceMessage> {
  const ready: EventSourceMessage[] = [];
  let failure: ParseError | undefined;
  const parser = createParser({
    maxBufferSize: limits.maxEventChars,
    onEvent: (event) => ready.push(event),
    onError: (error) => {
      // Unknown fields and bad `retry:` values are ignored, as the standard says; only the cap is fatal.
      if (error.type === 'max-buffer-size-exceeded') failure = error;
    },
  });
  let endsInCr = false;
  for await (const text of decodeUtf8(body, limits)) {
    parser.feed(text);
    endsInCr = text.endsWith('\r');
    if (failure) {
      throw new UpstreamResponseTooLargeError(`an SSE event from the upstream exceeded ${limits.maxEventChars} characters (${limits.setBy ?? 'GATEHOUSE_HTTP_MAX_EVENT_SIZE'})`, { cause: failure });
    }
    while (ready.length > 0) yield ready.shift()!;
  }
  // A CR as the stream's last byte ends its line; the parser waits to see whether an LF
  // follows, so complete the pair (the same line end) to dispatch the last event.
  if (endsInCr) parser.feed('\n');
  while (ready.length > 0) yield ready.shift()!;
}
