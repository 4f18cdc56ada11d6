import { AsyncResource } from 'node:async_hooks';
import { STATUS_CODES } from 'node:http';
import { ProtocolError } from '@modelcontextprotocol/client';
import { Pool } from 'undici';
import { systemClock, type Clock } from './clock.js';
import { UpstreamAuthError, parseBearerChallenge } from './auth-challenge.js';
import { DescribedError } from './error-description.js';
import { DEFAULT_RETRY, neverSent, parseRetryAfter, retryDelay, UpstreamRefusedError, type RetryOptions } from './http-retry.js';
import { MAX_REDIRECTS } from './redirects.js';
import { DEFAULT_RESPONSE_LIMITS, type ResponseLimits } from './sse-reader.js';
import { Cancellation, type Abortable } from './cancellation.js';
import { PostHandler, type BodyUse, type Reply, type ReplyHeaders, type SseBody } from './dispatch-reply.js';
import { SERVER_REQUEST_METHODS, type ServerRequestMethod } from './upstream-callers.js';

const isServerRequest = (method: string): method is ServerRequestMethod => (SERVER_REQUEST_METHODS as readonly string[]).includes(method);

export interface ForwardOptions {
  /** The caller's cancellation: aborting it aborts the call (failing with its reason) and tells the upstream. */
  cancellation?: Cancellation;
  /** No answer (and, with `maxTotalTimeoutMs`, no progress) within this many ms: the call fails. */
  timeoutMs: number;
  /** Each progress notification restarts `timeoutMs`, up to this many ms in all (MCP spec, basic/utilities/progress). */
  maxTotalTimeoutMs?: number;
  onProgress?: (params: Record<string, unknown>) => void;
  /** A request the upstream sent on this call's response stream (sampling, elicitation, roots): its answer is posted back. */
  onRequest?: (method: ServerRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal) => Promise<Record<string, unknown>>;
  /** Any other notification on this call's response stream (e.g. `notifications/message`). */
  onNotification?: (method: string, params: Record<string, unknown> | undefined) => void;
}

/** How an {@link HttpForwarder} reads, retries and redirects; every field has a default. */
export interface HttpForwarderOptions {
  /** Size caps on each response (GATEHOUSE_HTTP_MAX_EVENT_SIZE, GATEHOUSE_HTTP_MAX_RESPONSE_BYTES). */
  limits?: ResponseLimits;
  /** Backoff for requests the upstream refused (429/503) or that never reached it. */
  retry?: RetryOptions;
  /** Origins (`https://host:port`) besides the server URL's own that a 307/308 may lead to (the server's `redirectOrigins`). */
  redirectOrigins?: readonly string[];
  /** Waits between retries. */
  clock?: Clock;
}

/**
 * The upstream no longer knows our session: HTTP 404 to a request carrying its
 * `Mcp-Session-Id` (MCP 2025-06-18 basic/transports §Session Management: "MUST respond …
 * with HTTP 404"), or HTTP 400 that is not a JSON-RPC answer to the request (servers that
 * restarted and forgot every session say "Bad Request: No valid session ID" / "Server not
 * initialized"). The request was refused, not run: re-initialize and send it again.
 */
export class UpstreamSessionLostError extends DescribedError {}

interface RpcMessage {
  id?: number | string | null;
  method?: string;
  params?: Record<string, unknown>;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/** Time allowed to deliver a notifications/cancelled to the upstream. */
const CANCEL_TIMEOUT_MS = 2_000;

/** Whether a call's own cancellation `call` fired while the caller's `outer` did not: Gatehouse's timeout. */
const timedOut = (call: Cancellation, outer: Cancellation | undefined): boolean => call.aborted && !outer?.aborted;

/** The request target of `url` (path and query), as undici takes it. */
const pathOf = (url: URL): string => `${url.pathname}${url.search}`;

/**
 * The hot path to a streamable-HTTP upstream that speaks a 2025 (session) revision: one
 * keep-alive connection pool per upstream, a JSON-RPC POST per call on the session the SDK
 * client negotiated, JSON or SSE answers parsed as they arrive ({@link PostHandler}: undici's
 * low-level dispatch, no response stream; SSE through {@link SseBody}, within the size caps).
 * One {@link Cancellation} per call stops whatever it has in flight when the caller cancels,
 * the timeout fires or the connection closes.
 *
 * Around each request: 307/308 redirects are followed within the server's origin (or the
 * configured `redirectOrigins`), a 308 remembered for later calls; 429/503 refusals and
 * failures to connect are retried with backoff, jitter and `Retry-After` within the call's
 * deadline ({@link retryDelay}) — never another failure, since a `tools/call` the upstream
 * may have run must not run twice; a request aborted after it was sent (the caller's
 * cancellation or Gatehouse's own timeout) is followed by `notifications/cancelled` (MCP
 * 2025-06-18 basic/utilities/cancellation).
 *
 * Why not the SDK client for every call: its HTTP transport routes every fetch through one
 * long-lived AbortSignal, and under load the abort listeners pile up (Node warns past 1,500
 * and each request pays for the growing list) — measured at ~1,600 calls/s from a bare SDK
 * client against an upstream that serves 40,000. The SDK client still does what needs
 * protocol logic: era negotiation, initialize, listing, list-changed notifications.
 */
export class HttpForwarder {
  private readonly pools = new Map<string, Pool>();
  /** {@link close} was called: no pool is (re)made, so nothing sent later — an answer to a server request, a cancellation — can leave one open. */
  private closed = false;
  private target: URL;
  /** {@link pathOf} `target` and its origin, kept with it (not rebuilt per call). */
  private targetPath: string;
  private targetOrigin: string;
  private readonly origins: Set<string>;
  private readonly headers: Record<string, string>;
  private readonly limits: ResponseLimits;
  private readonly retry: RetryOptions;
  private readonly clock: Clock;
  private nextId = 1;

  constructor(
    url: URL,
    configuredHeaders: Record<string, string>,
    private readonly protocolVersion: string,
    sessionId: string | undefined,
    options: HttpForwarderOptions = {},
  ) {
    this.target = new URL(url);
    this.targetPath = pathOf(this.target);
    this.targetOrigin = this.target.origin;
    this.origins = new Set([url.origin, ...(options.redirectOrigins ?? [])]);
    this.limits = options.limits ?? DEFAULT_RESPONSE_LIMITS;
    this.retry = options.retry ?? DEFAULT_RETRY;
    this.clock = options.clock ?? systemClock;
    this.headers = {
      ...configuredHeaders,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': protocolVersion,
      ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
    };
  }

  /**
   * Sends one request and resolves with its result; JSON-RPC errors reject as ProtocolError,
   * a lost session as {@link UpstreamSessionLostError}, refusals past the retries as
   * {@link UpstreamRefusedError}, oversized answers as `UpstreamResponseTooLargeError`.
   */
  async request(method: string, params: Record<string, unknown> | undefined, options: ForwardOptions): Promise<unknown> {
    const deadline = this.clock.now() + options.timeoutMs;
    // One cancellation and one timer, cleared when the call settles: AbortSignal.timeout()/any()
    // would keep a timer and its signal alive for the whole timeout after every fast call.
    const outer = options.cancellation;
    const call = new Cancellation();
    const expire = () => call.abort(new Error('timeout'));
    let timer = setTimeout(expire, options.timeoutMs);
    outer?.hold(call);
    const { maxTotalTimeoutMs, onProgress } = options;
    let legOptions = options;
    if (maxTotalTimeoutMs && onProgress) {
      // resetTimeoutOnProgress semantics: each progress restarts the timeout, never past the total cap.
      const cap = Date.now() + Math.max(options.timeoutMs, maxTotalTimeoutMs);
      legOptions = {
        ...options,
        onProgress: (progress) => {
          clearTimeout(timer);
          if (!call.aborted) timer = setTimeout(expire, Math.max(0, Math.min(options.timeoutMs, cap - Date.now())));
          onProgress(progress);
        },
      };
    }
    try {
      for (let attempt = 0; ; attempt++) {
        const id = this.nextId++;
        let wait: number | undefined;
        try {
          return await this.exchange(id, method, params, call, legOptions);
        } catch (error) {
          if (call.aborted) {
            void this.notifyCancelled(id, timedOut(call, outer) ? `timed out after ${options.timeoutMs} ms (Gatehouse's timeout for this server)` : 'cancelled by the client');
            if (timedOut(call, outer)) throw new DescribedError(`timed out after ${options.timeoutMs} ms`, { cause: error });
            throw error;
          }
          const refused = error instanceof UpstreamRefusedError || neverSent(error);
          wait = refused ? retryDelay(this.retry, attempt, (error as Partial<UpstreamRefusedError>).retryAfterMs, deadline - this.clock.now()) : undefined;
          if (wait === undefined) throw error;
        }
        try {
          await this.sleep(wait, call);
        } catch (error) {
          if (timedOut(call, outer)) throw new DescribedError(`timed out after ${options.timeoutMs} ms (waiting to retry)`, { cause: error });
          throw error;
        }
      }
    } finally {
      clearTimeout(timer);
      outer?.release(call);
    }
  }

  /** Closes every pool (in-flight requests fail); any request after this fails with "closed". */
  async close(): Promise<void> {
    this.closed = true;
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.close().catch(() => undefined)));
  }

  /** Sends one POST, following allowed redirects; resolves with the answer to `id`. */
  private async exchange(id: number, method: string, params: Record<string, unknown> | undefined, call: Cancellation, options: ForwardOptions): Promise<unknown> {
    const { statusCode, headers, text, events } = await this.post({ jsonrpc: '2.0', id, method, params }, call, this.bodyUse);
    if (statusCode === 429 || statusCode === 503) throw new UpstreamRefusedError(statusCode, parseRetryAfter(headers['retry-after'], this.clock.now()));
    if (statusCode === 404 && this.headers['mcp-session-id']) throw new UpstreamSessionLostError('the upstream ended its session (HTTP 404)');
    if (statusCode === 401 || statusCode === 403) {
      // Refused before the message was processed (RFC 6750 §3.1): the challenge tells the caller what to do.
      const challenge = headers['www-authenticate'];
      throw new UpstreamAuthError(statusCode, parseBearerChallenge(Array.isArray(challenge) ? challenge.join(', ') : challenge));
    }
    if (events) return this.fromEventStream(events, id, options);
    let message: RpcMessage | undefined;
    try {
      message = JSON.parse(text!) as RpcMessage;
    } catch (error) {
      if (statusCode === 400 && this.headers['mcp-session-id']) throw new UpstreamSessionLostError('the upstream no longer knows its session (HTTP 400)');
      if (statusCode >= 400) throw new DescribedError(`HTTP ${statusCode}${STATUS_CODES[statusCode] ? ` ${STATUS_CODES[statusCode]}` : ''}`);
      throw error;
    }
    if (statusCode >= 400 && message?.id !== id) {
      if (statusCode === 400 && this.headers['mcp-session-id']) throw new UpstreamSessionLostError('the upstream no longer knows its session (HTTP 400)');
      throw new DescribedError(`HTTP ${statusCode}${STATUS_CODES[statusCode] ? ` ${STATUS_CODES[statusCode]}` : ''}`);
    }
    return this.settle(message, id);
  }

  /**
   * How {@link exchange} reads an answer: redirects (307/308, see {@link dispatch}), refusals
   * (429/503), a lost session (404), 401/403 are drained (their status says it all), SSE
   * streamed, anything else read whole.
   */
  private readonly bodyUse = (statusCode: number, headers: ReplyHeaders): BodyUse => {
    if (statusCode === 307 || statusCode === 308 || statusCode === 429 || statusCode === 503 || statusCode === 401 || statusCode === 403 || (statusCode === 404 && this.headers['mcp-session-id'])) return 'drain';
    return String(headers['content-type'] ?? '').startsWith('text/event-stream') ? 'events' : 'text';
  };

  /** POSTs `message` to the target, following 307/308 within the allowed origins (RFC 9110 §15.4.8/9: method and body kept). */
  private post(message: object, call: Cancellation, use: (statusCode: number, headers: ReplyHeaders) => BodyUse): Promise<Reply> {
    const target = this.target;
    // One promise for the POST and its redirects (not an async layer awaiting the dispatch's own).
    return new Promise<Reply>((resolve, reject) => {
      const body = JSON.stringify(message);
      this.send(target, body, call, use, (reply) => resolve(reply.statusCode === 307 || reply.statusCode === 308 ? this.redirected(reply, target, body, call, use) : reply), reject);
    });
  }

  /** Follows the redirect `reply` to a POST of `body` to `from`, and any after it (see {@link post}). */
  private async redirected(reply: Reply, from: URL, body: string, call: Cancellation, use: (statusCode: number, headers: ReplyHeaders) => BodyUse): Promise<Reply> {
    let url = from;
    for (let hops = 0; ; hops++) {
      const location = reply.headers.location;
      let next: URL;
      try {
        next = new URL(String(Array.isArray(location) ? location[0] : location), url);
      } catch {
        throw new DescribedError(`HTTP ${reply.statusCode} redirect without a valid Location`);
      }
      if (!this.origins.has(next.origin)) {
        throw new DescribedError(`HTTP ${reply.statusCode} redirect to ${next.origin}${next.pathname} not followed: another origin (list it in the server's redirectOrigins to allow it)`);
      }
      if (hops + 1 >= MAX_REDIRECTS) throw new DescribedError(`more than ${MAX_REDIRECTS} redirects`);
      // A permanent redirect holds for every later call too.
      if (reply.statusCode === 308 && url === this.target) {
        this.target = next;
        this.targetPath = pathOf(next);
        this.targetOrigin = next.origin;
      }
      url = next;
      reply = await this.dispatch(url, body, call, use);
      if (reply.statusCode !== 307 && reply.statusCode !== 308) return reply;
    }
  }

  /**
   * One POST of `body` to `url` through the origin's pool. `use` must drain a redirect's body
   * (307/308: only its status and Location matter) — {@link bodyUse} and `drainAll` do, so no
   * wrapper is made per call.
   */
  private dispatch(url: URL, body: string, call: Cancellation, use: (statusCode: number, headers: ReplyHeaders) => BodyUse): Promise<Reply> {
    return new Promise((resolve, reject) => this.send(url, body, call, use, resolve, reject));
  }

  /** {@link dispatch} with the reply (or failure) handed to `resolve`/`reject`; throws what `poolFor` throws. */
  private send(url: URL, body: string, call: Cancellation, use: (statusCode: number, headers: ReplyHeaders) => BodyUse, resolve: (reply: Reply) => void, reject: (error: unknown) => void): void {
    const handler = new PostHandler(this.limits, use, call, resolve, reject);
    const target = url === this.target;
    this.poolFor(target ? this.targetOrigin : url.origin).dispatch({ method: 'POST', path: target ? this.targetPath : pathOf(url), headers: this.headers, body }, handler);
  }

  private poolFor(origin: string): Pool {
    let pool = this.pools.get(origin);
    if (!pool) {
      if (this.closed) throw new DescribedError('the connection to this server is closed');
      pool = new Pool(origin, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
      this.pools.set(origin, pool);
    }
    return pool;
  }

  /** Tells the upstream to stop working on `requestId` (best effort, bounded, never throws). */
  private async notifyCancelled(requestId: number, reason: string): Promise<void> {
    if (this.closed) return;
    await this.postDrained({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } });
  }

  /** POSTs `message` (a notification, an answer) within CANCEL_TIMEOUT_MS, its reply drained; never throws. */
  private async postDrained(message: object): Promise<void> {
    const call = new Cancellation();
    const timer = setTimeout(() => call.abort(new DOMException('The operation was aborted due to timeout', 'TimeoutError')), CANCEL_TIMEOUT_MS).unref();
    try {
      await this.post(message, call, drainAll);
    } catch {
      // The upstream may be gone; a cancellation is advisory anyway, and a call fails on its own stream.
    } finally {
      clearTimeout(timer);
    }
  }

  private sleep(ms: number, call: Cancellation): Promise<void> {
    return new Promise((resolve, reject) => {
      const waiting: Abortable = {
        abort: (reason) => {
          timer.cancel();
          reject(reason instanceof Error ? reason : new DescribedError('aborted'));
        },
      };
      const timer = this.clock.setTimer(() => {
        call.release(waiting);
        resolve();
      }, ms);
      call.hold(waiting);
    });
  }

  /**
   * Answers a request the upstream sent on a call's response stream (MCP spec, basic/transports:
   * the client POSTs its JSON-RPC response on the session). The answer comes from
   * `options.onRequest`; without one, or for a method a client does not serve, -32601.
   */
  private async answer(message: RpcMessage & { method: string; id: number | string }, options: ForwardOptions): Promise<void> {
    let reply: Record<string, unknown>;
    try {
      if (!options.onRequest || !isServerRequest(message.method)) throw new ProtocolError(-32601, `Method not found: ${message.method}`);
      const result = await options.onRequest(message.method, message.params, options.cancellation?.signal ?? new AbortController().signal);
      reply = { jsonrpc: '2.0', id: message.id, result };
    } catch (error) {
      const e = error instanceof ProtocolError ? error : new ProtocolError(-32603, error instanceof Error ? error.message : String(error));
      reply = { jsonrpc: '2.0', id: message.id, error: { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) } };
    }
    await this.postDrained(reply);
  }

  private settle(message: RpcMessage, id: number): unknown {
    if (message?.id !== id) throw new DescribedError('the upstream answered another request id');
    if (message.error) throw new ProtocolError(message.error.code, message.error.message, message.error.data);
    return message.result;
  }

  /**
   * Reads SSE events until the response to `id`, passing progress notifications on. Events are
   * handled in the caller's async context (its request's logger), not the socket's.
   */
  private fromEventStream(events: SseBody, id: number, options: ForwardOptions): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const onEvent = (event: { event?: string; data: string }): boolean => {
        if (!event.data || (event.event !== undefined && event.event !== 'message')) return false;
        const message = JSON.parse(event.data) as RpcMessage;
        if (message.method === 'notifications/progress' && message.params) options.onProgress?.(message.params);
        else if (message.method !== undefined && message.id !== undefined) void this.answer(message as RpcMessage & { method: string; id: number | string }, options);
        else if (message.method !== undefined) options.onNotification?.(message.method, message.params);
        else if (message.id === id) {
          resolve(this.settle(message, id));
          return true;
        }
        return false;
      };
      // The stream's own error as is (an abort's reason, undici's error), as iterating the body threw it.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      events.consume(AsyncResource.bind(onEvent), AsyncResource.bind((error?: unknown) => reject(error ?? new DescribedError('the upstream closed the stream without an answer'))));
    });
  }
}

/** Every reply drained: notifications and answers need only be delivered. */
const drainAll = (): BodyUse => 'drain';
