import { request, type Agent, type IncomingHttpHeaders } from 'node:http';

export interface HeldResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** A request whose body the test holds back, so it is in flight exactly as long as the test wants. */
export interface HeldRequest {
  /** Resolves once the server has read the request head (it answered `100 Continue`). */
  accepted: Promise<void>;
  /** Sends the body; resolves with the response. */
  release(): Promise<HeldResponse>;
  /** Resolves when the connection the request used is closed (by either side). */
  connectionClosed: Promise<void>;
}

/**
 * POSTs `body` as JSON to `url` on `agent`, but sends only the head at first
 * (`Expect: 100-continue`, RFC 9110 §10.1.1): the server has the request (Node's HTTP server
 * answers 100 and hands it to the app) and waits for the body until {@link HeldRequest.release}.
 * Deterministic stand-in for a slow request: no sleeps, the test decides when it completes.
 */
export function holdRequest(url: string, body: unknown, agent: Agent, headers: Record<string, string> = {}): HeldRequest {
  const payload = Buffer.from(JSON.stringify(body));
  let onResponse!: (r: HeldResponse) => void;
  let onError!: (e: Error) => void;
  const response = new Promise<HeldResponse>((resolve, reject) => {
    onResponse = resolve;
    onError = reject;
  });
  let onAccepted!: () => void;
  const accepted = new Promise<void>((resolve, reject) => {
    onAccepted = resolve;
    void response.catch(reject);
  });
  let onClosed!: () => void;
  const connectionClosed = new Promise<void>((resolve) => (onClosed = resolve));

  const req = request(url, {
    method: 'POST',
    agent,
    headers: { 'content-type': 'application/json', 'content-length': String(payload.length), expect: '100-continue', ...headers },
  });
  req.on('socket', (socket) => socket.once('close', () => onClosed()));
  req.on('continue', () => onAccepted());
  req.on('error', (e) => onError(e));
  req.on('response', (res) => {
    let text = '';
    res.on('data', (c: Buffer) => (text += c.toString()));
    res.on('end', () => onResponse({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    res.on('error', (e) => onError(e));
  });
  req.flushHeaders();
  return {
    accepted,
    connectionClosed,
    release: () => {
      req.end(payload);
      return response;
    },
  };
}

/** A legacy (2025-06-18) MCP `initialize` request body. */
export const INITIALIZE = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'drain-test', version: '1' } },
};

/** Headers a legacy MCP client sends with a POST. */
export const MCP_HEADERS = { accept: 'application/json, text/event-stream' };
