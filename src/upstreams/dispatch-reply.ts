import type { Dispatcher } from 'undici';
import type { EventSourceMessage } from 'eventsource-parser';
import type { Abortable, Cancellation } from './cancellation.js';
import { SseFeed, tooLarge, type ResponseLimits } from './sse-reader.js';

/** Headers of an upstream response as undici parses them (names lower-cased; repeated ones as arrays). */
export type ReplyHeaders = Record<string, string | string[] | undefined>;

/**
 * What to do with a response body, chosen from its status and headers: read it whole as text,
 * stream it as server-sent events, or drain it (its status says everything; at most
 * {@link DRAIN_LIMIT} bytes are read before the connection is dropped instead).
 */
export type BodyUse = 'text' | 'events' | 'drain';

/** Most bytes of a drained body read to keep the connection (undici's `body.dump()` default). */
export const DRAIN_LIMIT = 128 * 1024;

/** An upstream's answer to one POST: its status and headers, and its body as {@link BodyUse} said. */
export interface Reply {
  statusCode: number;
  headers: ReplyHeaders;
  /** The whole body as UTF-8 text (`text`). */
  text?: string;
  /** The body's events as they arrive (`events`); resolved at the headers. */
  events?: SseBody;
}

const UTF8 = new TextDecoder('utf-8');

/**
 * undici's low-level handler (`Dispatcher.dispatch`, docs/api/Dispatcher.md) for one POST to
 * an upstream: no response stream, no `AbortSignal` handed to undici, chunks collected as they
 * arrive. Settles `resolve` with the {@link Reply} — at the body's end for `text` and `drain`,
 * at the headers for `events` — or `reject` with undici's error (refused connection, socket
 * closed mid-body), the reason it was aborted with, or {@link UpstreamResponseTooLargeError}
 * past `maxResponseBytes` (the request is then dropped). Held by `cancellation` while it runs.
 */
export class PostHandler implements Dispatcher.DispatchHandler, Abortable {
  private controller: Dispatcher.DispatchController | undefined;
  private pendingAbort = false;
  private pendingReason: unknown;
  private statusCode = 0;
  private headers: ReplyHeaders = {};
  private use: BodyUse = 'text';
  private readonly chunks: Buffer[] = [];
  private bytes = 0;
  private settled = false;
  private events: SseBody | undefined;

  constructor(
    private readonly limits: ResponseLimits,
    private readonly choose: (statusCode: number, headers: ReplyHeaders) => BodyUse,
    private readonly cancellation: Cancellation,
    private readonly resolve: (reply: Reply) => void,
    private readonly reject: (error: unknown) => void,
  ) {
    cancellation.hold(this);
  }

  abort(reason: unknown): void {
    if (this.controller) this.controller.abort(reason as Error);
    else {
      // Not on a connection yet (queued in the pool): undici aborts it when it gets one, as with a signal.
      this.pendingAbort = true;
      this.pendingReason = reason;
    }
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.pendingAbort) controller.abort(this.pendingReason as Error);
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: ReplyHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, the answer follows
    this.statusCode = statusCode;
    this.headers = headers;
    this.use = this.choose(statusCode, headers);
    if (this.use === 'events') {
      this.events = new SseBody(this.limits, () => this.abort(new Error('answered')));
      this.settle();
    } else if (this.use === 'drain' && Number(headers['content-length']) > DRAIN_LIMIT) {
      this.settle();
      controller.abort(new Error('drained'));
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.use === 'events') {
      this.events!.push(chunk);
      return;
    }
    this.bytes += chunk.byteLength;
    if (this.use === 'drain') {
      if (this.bytes > DRAIN_LIMIT && !this.settled) {
        this.settle();
        controller.abort(new Error('drained'));
      }
      return;
    }
    if (this.bytes > this.limits.maxResponseBytes) {
      const error = tooLarge(this.limits);
      this.fail(error);
      controller.abort(error);
      return;
    }
    this.chunks.push(chunk);
  }

  onResponseEnd(): void {
    this.cancellation.release(this);
    if (this.use === 'events') this.events!.end();
    else if (this.use === 'text') this.settle(UTF8.decode(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks)));
    else this.settle();
  }

  onResponseError(_controller: unknown, error: Error): void {
    this.cancellation.release(this);
    if (this.events) this.events.fail(error);
    // A drained body's own failure does not matter: its status said everything.
    else if (this.use === 'drain' && this.statusCode !== 0) this.settle();
    else this.fail(error);
  }

  private settle(text?: string): void {
    if (this.settled) return;
    this.settled = true;
    this.resolve({ statusCode: this.statusCode, headers: this.headers, text, events: this.events });
  }

  private fail(error: unknown): void {
    if (this.settled) return;
    this.settled = true;
    this.reject(error);
  }
}

/**
 * A `text/event-stream` response body, parsed as it arrives ({@link SseFeed}). Chunks that
 * arrive before {@link consume} is called are kept and parsed then.
 */
export class SseBody {
  private pending: Buffer[] = [];
  private ended = false;
  private failure: { error: unknown } | undefined;
  private feed: SseFeed | undefined;
  private onDone: ((error?: unknown) => void) | undefined;
  private stopped = false;

  constructor(
    private readonly limits: ResponseLimits,
    /** Drops the request (the rest of the body is not wanted). */
    private readonly drop: () => void,
  ) {}

  /**
   * Hands each event to `onEvent` until it returns true (it has what it wanted: the rest of
   * the body is dropped) or throws (the error ends it). `onDone` is called once: with the
   * error if one ended it (an event past a cap: {@link UpstreamResponseTooLargeError}; the
   * connection failing), with nothing if the body ended first; never after `onEvent` returned true.
   */
  consume(onEvent: (event: EventSourceMessage) => boolean, onDone: (error?: unknown) => void): void {
    this.onDone = onDone;
    this.feed = new SseFeed(this.limits, (event) => {
      if (this.stopped) return;
      let enough: boolean;
      try {
        enough = onEvent(event);
      } catch (error) {
        this.stop(error);
        return;
      }
      if (enough) this.stop();
    });
    const pending = this.pending;
    this.pending = [];
    for (const chunk of pending) this.push(chunk);
    if (this.failure) this.finish(this.failure.error);
    else if (this.ended) this.end();
  }

  /** The body's next bytes (from undici). */
  push(chunk: Buffer): void {
    if (this.stopped) return;
    if (!this.feed) {
      this.pending.push(chunk);
      return;
    }
    try {
      this.feed.push(chunk);
    } catch (error) {
      this.stop(error);
    }
  }

  /** The body ended. */
  end(): void {
    if (this.stopped) return;
    if (!this.feed) {
      this.ended = true;
      return;
    }
    try {
      this.feed.end();
    } catch (error) {
      this.stop(error);
      return;
    }
    this.finish(undefined);
  }

  /** The request failed (socket closed, aborted). */
  fail(error: unknown): void {
    if (this.stopped) return;
    if (!this.feed) this.failure = { error };
    else this.finish(error);
  }

  /** Stops reading: with an error it is reported; either way the request is dropped. */
  private stop(error?: unknown): void {
    if (error !== undefined) this.finish(error);
    this.stopped = true;
    this.drop();
  }

  private finish(error: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.onDone!(error);
  }
}
