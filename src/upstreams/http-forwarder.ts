import { ProtocolError } from '@modelcontextprotocol/client';
import { Pool } from 'undici';
import { DescribedError } from './error-description.js';

export interface ForwardOptions {
  signal?: AbortSignal;
  timeoutMs: number;
  onProgress?: (params: Record<string, unknown>) => void;
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
    const timer = setTimeout(() => controller.abort(new Error('timeout')), options.timeoutMs);
    const cancel = () => controller.abort(options.signal?.reason);
    options.signal?.addEventListener('abort', cancel, { once: true });
    const timeout = { get aborted() { return controller.signal.aborted && !options.signal?.aborted; } };
    try {
      return await this.exchange(id, method, params, controller.signal, timeout, options);
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
        else if (message.id === id) return this.settle(message, id);
      }
    }
    throw new DescribedError('the upstream closed the stream without an answer');
  }
}
