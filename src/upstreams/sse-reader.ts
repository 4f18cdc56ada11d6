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

/** The error for a response body past `maxResponseBytes`. */
export function tooLarge(limits: Pick<ResponseLimits, 'maxResponseBytes' | 'setBy'>): UpstreamResponseTooLargeError {
  return new UpstreamResponseTooLargeError(`the upstream's response exceeded ${limits.maxResponseBytes} bytes (${limits.setBy ?? 'GATEHOUSE_HTTP_MAX_RESPONSE_BYTES'})`);
}

/**
 * Parses a `text/event-stream` body pushed to it chunk by chunk (bytes as they arrive), the
 * same way as {@link readSseEvents}: bytes counted against `maxResponseBytes` before decoding
 * (past it: {@link UpstreamResponseTooLargeError}), UTF-8 decoded as it streams (a multi-byte
 * character split across chunks kept whole; invalid bytes become U+FFFD, never an error), framed by
 * `eventsource-parser` within `maxEventChars`. Each chunk's complete events are handed to
 * `onEvent` after the chunk was parsed, so a chunk that takes an event over the cap throws
 * {@link UpstreamResponseTooLargeError} from {@link push} before any of its events is handed on.
 */
export class SseFeed {
  private readonly decoder = new TextDecoder('utf-8');
  private readonly parser;
  private readonly ready: EventSourceMessage[] = [];
  private failure: ParseError | undefined;
  private bytes = 0;
  private endsInCr = false;

  constructor(
    private readonly limits: ResponseLimits,
    private readonly onEvent: (event: EventSourceMessage) => void,
  ) {
    this.parser = createParser({
      maxBufferSize: limits.maxEventChars,
      onEvent: (event) => this.ready.push(event),
      onError: (error) => {
        // Unknown fields and bad `retry:` values are ignored, as the standard says; only the cap is fatal.
        if (error.type === 'max-buffer-size-exceeded') this.failure = error;
      },
    });
  }

  /** Takes the body's next bytes; throws {@link UpstreamResponseTooLargeError} past a cap. */
  push(chunk: Uint8Array): void {
    this.bytes += chunk.byteLength;
    if (this.bytes > this.limits.maxResponseBytes) throw tooLarge(this.limits);
    const text = this.decoder.decode(chunk, { stream: true });
    if (text) this.text(text);
  }

  /** The body ended: decodes what the decoder held and dispatches the last event if its line end was a lone CR. */
  end(): void {
    const rest = this.decoder.decode();
    if (rest) this.text(rest);
    // A CR as the stream's last byte ends its line; the parser waits to see whether an LF
    // follows, so complete the pair (the same line end) to dispatch the last event.
    if (this.endsInCr) this.parser.feed('\n');
    this.deliver();
  }

  private text(text: string): void {
    this.parser.feed(text);
    this.endsInCr = text.endsWith('\r');
    if (this.failure) {
      throw new UpstreamResponseTooLargeError(`an SSE event from the upstream exceeded ${this.limits.maxEventChars} characters (${this.limits.setBy ?? 'GATEHOUSE_HTTP_MAX_EVENT_SIZE'})`, { cause: this.failure });
    }
    this.deliver();
  }

  private deliver(): void {
    while (this.ready.length > 0) this.onEvent(this.ready.shift()!);
  }
}

/**
 * The events of a `text/event-stream` body, in order, as they complete. Framing is the HTML
 * Living Standard's "Server-sent events" parsing (§9.2.6): lines end in CRLF, LF or a lone CR
 * (the Python SDK frames with CRLF), a leading BOM is dropped, multi-line `data:` is joined
 * with LF, an event without a terminating blank line at the end of the stream is discarded.
 * Parsing is {@link SseFeed} (`eventsource-parser`, linear in the body's size).
 *
 * Memory is bounded by `limits`: an event still open after `maxEventChars` characters, or a
 * body past `maxResponseBytes`, throws {@link UpstreamResponseTooLargeError}; the caller
 * dropping the request (ending the iteration) releases the socket.
 */
export async function* readSseEvents(body: AsyncIterable<Uint8Array>, limits: ResponseLimits): AsyncGenerator<EventSourceMessage> {
  const ready: EventSourceMessage[] = [];
  const feed = new SseFeed(limits, (event) => ready.push(event));
  for await (const chunk of body) {
    feed.push(chunk);
    while (ready.length > 0) yield ready.shift()!;
  }
  feed.end();
  while (ready.length > 0) yield ready.shift()!;
}
