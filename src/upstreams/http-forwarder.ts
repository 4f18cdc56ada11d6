import { ProtocolError } from '@modelcontextprotocol/client';
import { Pool } from 'undici';
import { DescribedError } from './error-description.js';
import { SERVER_REQUEST_METHODS, type ServerRequestMethod } from './upstream-callers.js';

const isServerRequest = (method: string): method is ServerRequestMethod => (SERVER_REQUEST_METHODS as readonly string[]).includes(method);

export interface ForwardOptions {
  signal?: AbortSignal;
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

/** The upstream answered 404 for our session: it ended it, and the connection must start over. */
export class UpstreamSessionLostError extends DescribedError {}

interface RpcMessage {
  id?: number | string;
  method?: string;
  params?: Record<string, unknown>;
  result?: unknown;
  error?: { code: number; message: string; data?: unknown };
}

/**
 * The hot path to a streamable-HTTP upstream that speaks a 2025 (session) revision: one
 * keep-alive connection pool per upstream, a JSON-RPC POST per call on the session the SDK
 * client negotiated, JSON or SSE answers parsed as they stream.
 *
 * Why not the SDK client for every call: its HTTP transport routes every fetch through one
 * long-lived AbortSignal, and under load the abort listeners pile up (Node warns past 1,500
 * and each request pays for the growing list) — measured at ~1,600 calls/s from a bare SDK
 * client against an upstream that serves 40,000. The SDK client still does what needs
 * protocol logic: era negotiation, initialize, listing, list-changed notifications.
 */
export class HttpForwarder {
  private readonly pool: Pool;
  private readonly path: string;
  private readonly headers: Record<string, string>;
  private nextId = 1;

  constructor(
    url: URL,
    configuredHeaders: Record<string, string>,
    private readonly protocolVersion: string,
    sessionId: string | undefined,
  ) {
    this.pool = new Pool(url.origin, { connections: 64, pipelining: 1, keepAliveTimeout: 30_000 });
    this.path = `${url.pathname}${url.search}`;
    this.headers = {
      ...configuredHeaders,
      'content-type': 'application/json',
      accept: 'application/json, text/event-stream',
      'mcp-protocol-version': protocolVersion,
      ...(sessionId ? { 'mcp-session-id': sessionId } : {}),
    };
  }

  /** Sends one request and resolves with its result; JSON-RPC errors reject as ProtocolError. */
  async request(method: string, params: Record<string, unknown> | undefined, options: ForwardOptions): Promise<unknown> {
    const id = this.nextId++;
    // One controller, cleared when the call settles: AbortSignal.timeout()/any() would keep a
    // timer and its signal alive for the whole timeout after every fast call.
    const controller = new AbortController();
    const expire = () => controller.abort(new Error('timeout'));
    let timer = setTimeout(expire, options.timeoutMs);
    const cancel = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', cancel, { once: true });
    const timeout = { get aborted() { return controller.signal.aborted && !options.signal?.aborted; } };
    const { maxTotalTimeoutMs, onProgress } = options;
    let legOptions = options;
    if (maxTotalTimeoutMs && onProgress) {
      // resetTimeoutOnProgress semantics: each progress restarts the timeout, never past the total cap.
      const deadline = Date.now() + Math.max(options.timeoutMs, maxTotalTimeoutMs);
      legOptions = {
        ...options,
        onProgress: (progress) => {
          clearTimeout(timer);
          if (!controller.signal.aborted) timer = setTimeout(expire, Math.max(0, Math.min(options.timeoutMs, deadline - Date.now())));
          onProgress(progress);
        },
      };
    }
    try {
      return await this.exchange(id, method, params, controller.signal, timeout, legOptions);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', cancel);
    }
  }

  private async exchange(
    id: number,
    method: string,
    params: Record<string, unknown> | undefined,
    signal: AbortSignal,
    timeout: { aborted: boolean },
    options: ForwardOptions,
  ): Promise<unknown> {
    let response;
    try {
      response = await this.pool.request({
        method: 'POST',
        path: this.path,
        headers: this.headers,
        body: JSON.stringify({ jsonrpc: '2.0', id, method, params }),
        signal,
      });
    } catch (error) {
      if (timeout.aborted) throw new DescribedError(`timed out after ${options.timeoutMs} ms`, { cause: error });
      throw error;
    }
    const { statusCode, headers, body } = response;
    if (statusCode === 404 && this.headers['mcp-session-id']) {
      await body.dump();
      throw new UpstreamSessionLostError('the upstream ended its session');
    }
    const type = String(headers['content-type'] ?? '');
    try {
      if (type.startsWith('text/event-stream')) return await this.fromEventStream(body, id, options);
      const text = await body.text();
      if (statusCode >= 400 && !type.includes('json')) throw new DescribedError(`HTTP ${statusCode}`);
      return this.settle(JSON.parse(text) as RpcMessage, id);
    } catch (error) {
      if (timeout.aborted) throw new DescribedError(`timed out after ${options.timeoutMs} ms`, { cause: error });
      throw error;
    }
  }

  async close(): Promise<void> {
    await this.pool.close().catch(() => undefined);
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
      const result = await options.onRequest(message.method, message.params, options.signal ?? new AbortController().signal);
      reply = { jsonrpc: '2.0', id: message.id, result };
    } catch (error) {
      const e = error instanceof ProtocolError ? error : new ProtocolError(-32603, error instanceof Error ? error.message : String(error));
      reply = { jsonrpc: '2.0', id: message.id, error: { code: e.code, message: e.message, ...(e.data === undefined ? {} : { data: e.data }) } };
    }
    try {
      const response = await this.pool.request({ method: 'POST', path: this.path, headers: this.headers, body: JSON.stringify(reply) });
      await response.body.dump();
    } catch {
      // the upstream is gone: the call itself fails on its own stream
    }
  }

  private settle(message: RpcMessage, id: number): unknown {
    if (message.id !== id) throw new DescribedError('the upstream answered another request id');
    if (message.error) throw new ProtocolError(message.error.code, message.error.message, message.error.data);
    return message.result;
  }

  /** Reads SSE events until the response to `id`, passing progress notifications on. */
  private async fromEventStream(body: AsyncIterable<Buffer>, id: number, options: ForwardOptions): Promise<unknown> {
    let buffer = '';
    for await (const chunk of body) {
      buffer += chunk.toString('utf8');
      let end: number;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = event
          .split('\n')
          .filter((line) => line.startsWith('data:'))
          .map((line) => line.slice(5).trimStart())
          .join('\n');
        if (!data) continue;
        const message = JSON.parse(data) as RpcMessage;
        if (message.method === 'notifications/progress' && message.params) options.onProgress?.(message.params);
        else if (message.method !== undefined && message.id !== undefined) void this.answer(message as RpcMessage & { method: string; id: number | string }, options);
        else if (message.method !== undefined) options.onNotification?.(message.method, message.params);
        else if (message.id === id) return this.settle(message, id);
      }
    }
    throw new DescribedError('the upstream closed the stream without an answer');
  }
}
