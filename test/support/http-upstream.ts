import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

export interface RpcMessage {
  jsonrpc?: string;
  id?: number | string | null;
  method?: string;
  params?: Record<string, unknown> & { arguments?: Record<string, unknown> };
  result?: unknown;
  error?: unknown;
}

/** How {@link HttpUpstream} frames and fails; change the fields between calls. */
export interface Behaviour {
  /** Line ending of the SSE answers (`\r\n` as the Python SDK frames them). */
  eol: '\n' | '\r\n' | '\r';
  /** Answer tools/call as SSE (else as JSON). */
  sse: boolean;
  /** Write SSE answers in slices of this many bytes (splitting multi-byte characters), each flushed. */
  sliceBytes: number;
  /** Answers `refusalMethod` (default tools/call) takes first, one per request: a refusal status with its Retry-After. */
  refusals: { status: number; retryAfter?: string }[];
  refusalMethod?: string;
  /** Status and body for a request carrying an unknown session id (404 per spec; some servers 400). */
  lostSession: { status: number; body: string };
  /** `/mcp` answers this redirect status to `/mcp/` (or `redirectTo`), which serves. */
  redirect?: { status: 307 | 308; to?: string };
  /** Every request must carry `Authorization: Bearer <token>`, else 401 (an API that refuses a blank credential). */
  token?: string;
}

const TOOLS = [
  { name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
  { name: 'big', inputSchema: { type: 'object', properties: { chars: { type: 'number' } } } },
  { name: 'wait', inputSchema: { type: 'object', properties: { ms: { type: 'number' } } } },
  { name: 'reset', description: 'reads the call, then drops the connection without answering', inputSchema: { type: 'object' } },
  { name: 'endless', description: 'an SSE event that never ends', inputSchema: { type: 'object' } },
];

/**
 * A hand-framed 2025-06-18 streamable-HTTP MCP server for fault tests: sessions it can forget
 * (a restart), SSE framed with any line ending and sliced mid-character, 429/503 refusals,
 * redirects, a connection dropped after the request, an event that never ends; it records
 * every message it received (`received`) and every `notifications/cancelled` (`cancelled`).
 */
export class HttpUpstream {
  readonly behaviour: Behaviour = { eol: '\n', sse: true, sliceBytes: 0, refusals: [], lostSession: { status: 404, body: '' } };
  readonly received: RpcMessage[] = [];
  readonly cancelled: Record<string, unknown>[] = [];
  /** Ids of `wait` calls that ran to their end (not cancelled). */
  readonly completed: (number | string | null | undefined)[] = [];
  readonly sessions = new Set<string>();
  /** Requests by path (redirect checks). */
  readonly paths: string[] = [];
  /** Bytes written by `endless` so far. */
  endlessBytes = 0;
  private readonly waiting = new Map<string, () => void>();
  private server!: Server;
  url = '';

  static async start(): Promise<HttpUpstream> {
    const upstream = new HttpUpstream();
    upstream.server = createServer((req, res) => void upstream.serve(req, res));
    await new Promise<void>((resolve) => upstream.server.listen(0, '127.0.0.1', resolve));
    const address = upstream.server.address();
    upstream.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/mcp`;
    return upstream;
  }

  /** Forgets every session, as a restarted server does. */
  forgetSessions(): void {
    this.sessions.clear();
  }

  /** `tools/call` messages received (each attempt counts). */
  calls(name?: string): RpcMessage[] {
    return this.received.filter((m) => m.method === 'tools/call' && (name === undefined || m.params?.name === name));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.paths.push(req.url ?? '');
    const redirect = this.behaviour.redirect;
    if (redirect && req.url === '/mcp') {
      res.writeHead(redirect.status, { location: redirect.to ?? '/mcp/' }).end();
      return;
    }
    if (this.behaviour.token !== undefined && req.headers.authorization !== `Bearer ${this.behaviour.token}`) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' }).end('{"error":"invalid_token"}');
      return;
    }
    if (req.method === 'DELETE') {
      res.writeHead(200).end();
      return;
    }
    if (req.method !== 'POST') {
      res.writeHead(405).end();
      return;
    }
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const message = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RpcMessage;
    this.received.push(message);
    const session = req.headers['mcp-session-id'];
    if (message.method === 'initialize') {
      const id = randomUUID();
      this.sessions.add(id);
      const result = { protocolVersion: '2025-06-18', capabilities: { tools: {}, prompts: {} }, serverInfo: { name: 'http-fault', version: '1' } };
      res.writeHead(200, { 'content-type': 'application/json', 'mcp-session-id': id }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result }));
      return;
    }
    if (typeof session !== 'string' || !this.sessions.has(session)) {
      const { status, body } = this.behaviour.lostSession;
      res.writeHead(status, { 'content-type': 'application/json' }).end(body || JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Session not found' } }));
      return;
    }
    if (message.id === undefined) {
      if (message.method === 'notifications/cancelled') {
        this.cancelled.push(message.params ?? {});
        this.waiting.get(JSON.stringify(message.params?.requestId))?.();
      }
      res.writeHead(202).end();
      return;
    }
    const refusal = message.method === (this.behaviour.refusalMethod ?? 'tools/call') ? this.behaviour.refusals.shift() : undefined;
    if (refusal) {
      res.writeHead(refusal.status, { 'content-type': 'text/plain', ...(refusal.retryAfter ? { 'retry-after': refusal.retryAfter } : {}) }).end('busy');
      return;
    }
    if (message.method === 'tools/list') return this.json(res, { jsonrpc: '2.0', id: message.id, result: { tools: TOOLS } });
    if (message.method === 'prompts/list') return this.json(res, { jsonrpc: '2.0', id: message.id, result: { prompts: [{ name: 'greet' }] } });
    if (message.method === 'prompts/get') {
      return this.json(res, { jsonrpc: '2.0', id: message.id, result: { messages: [{ role: 'user', content: { type: 'text', text: 'hello' } }] } });
    }
    if (message.method !== 'tools/call') return this.json(res, { jsonrpc: '2.0', id: message.id, error: { code: -32601, message: 'Method not found' } });
    await this.call(message, res);
  }

  private async call(message: RpcMessage, res: ServerResponse): Promise<void> {
    const args = message.params?.arguments ?? {};
    const answer = (text: string) => ({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text }] } });
    switch (message.params?.name) {
      case 'reset':
        res.socket?.destroy();
        return;
      case 'endless':
        return this.endless(res);
      case 'wait': {
        const key = JSON.stringify(message.id);
        const done = await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), Number(args.ms ?? 0));
          this.waiting.set(key, () => {
            clearTimeout(timer);
            resolve(false);
          });
        });
        this.waiting.delete(key);
        if (done) this.completed.push(message.id);
        if (!done) return void res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
        return this.reply(res, answer('waited'));
      }
      case 'big':
        return this.reply(res, answer('é'.repeat(Number(args.chars ?? 0))));
      default:
        return this.reply(res, answer(typeof args.text === 'string' ? args.text : ''));
    }
  }

  private json(res: ServerResponse, body: unknown): void {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  }

  /** An answer, as SSE (a progress notification first) framed per {@link Behaviour}, or as JSON. */
  private async reply(res: ServerResponse, body: RpcMessage): Promise<void> {
    if (!this.behaviour.sse) return this.json(res, body);
    const { eol, sliceBytes } = this.behaviour;
    const progress = { jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: 1 } };
    const text = `: comment${eol}event: message${eol}data: ${JSON.stringify(progress)}${eol}${eol}id: 1${eol}data: ${JSON.stringify(body)}${eol}${eol}`;
    const bytes = Buffer.from(text, 'utf8');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (sliceBytes <= 0) return void res.end(bytes);
    for (let at = 0; at < bytes.length; at += sliceBytes) {
      res.write(bytes.subarray(at, at + sliceBytes));
      // Each slice its own TCP segment, as a slow network delivers them.
      await new Promise((r) => setImmediate(r));
    }
    res.end();
  }

  /** `data: xxxx…` with no line end, for as long as the client reads it (honouring backpressure). */
  private async endless(res: ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: ');
    const block = Buffer.alloc(64 * 1024, 'x');
    while (!res.destroyed) {
      this.endlessBytes += block.length;
      if (!res.write(block)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done).off('close', done);
            resolve();
          };
          res.on('drain', done).on('close', done);
        });
      }
    }
  }
}
