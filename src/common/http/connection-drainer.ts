import type { Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Closes a Node HTTP server's kept-alive connections as soon as each one's last response is
 * written, once draining has begun.
 *
 * Fastify's `forceCloseConnections: 'idle'` closes only the connections that are idle when
 * the server starts closing; a connection that is serving a request then stays open after its
 * response (keep-alive) until the client sends another request or the keep-alive timeout ends,
 * so a drain would wait out all of `SHUTDOWN_TIMEOUT`. While draining, every response whose
 * header is not yet written gets `Connection: close` (Node then ends the connection after it,
 * RFC 9112 §9.6), and a connection whose response had already started (a stream) is ended
 * once that response finishes and nothing else is queued on it.
 *
 * Attach it before the server starts serving; call {@link begin} when shutdown starts.
 */
export class ConnectionDrainer {
  private draining = false;
  private readonly inFlight = new Set<ServerResponse>();
  /** Open client connections (to close the ones that never sent a byte when draining begins). */
  private readonly sockets = new Set<Socket>();

  constructor(private readonly server: Server) {
    const { sockets } = this;
    function onSocketClose(this: Socket): void {
      sockets.delete(this);
    }
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', onSocketClose);
    });
    // One listener function for every response (`this` is the response; 'close' is emitted once):
    // no closure and no `once` wrapper per request.
    const { inFlight } = this;
    const closed = (socket: Socket) => {
      if (this.draining) this.endWhenIdle(socket);
    };
    function onClose(this: ServerResponse): void {
      inFlight.delete(this);
      closed(this.req.socket);
    }
    server.on('request', (_request: unknown, response: ServerResponse) => {
      this.inFlight.add(response);
      if (this.draining) this.markClose(response);
      response.on('close', onClose);
    });
  }

  /** Whether {@link begin} has been called. */
  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Starts draining: in-flight responses will close their connections when written, and
   * connections idle now (kept alive after a response, or opened and silent) are closed at
   * once. Idempotent.
   */
  begin(): void {
    if (this.draining) return;
    this.draining = true;
    for (const response of this.inFlight) this.markClose(response);
    this.server.closeIdleConnections();
    // A connection that has sent nothing yet (a preconnect; undici opens one after an aborted
    // request) is not idle to Node (it awaits its first request's headers): closeIdleConnections
    // leaves it, and it would hold the drain until SHUTDOWN_TIMEOUT. Nothing of it is lost.
    for (const socket of this.sockets) {
      if (socket.bytesRead === 0 && !(socket as Socket & { _httpMessage?: unknown })._httpMessage) socket.destroy();
    }
  }

  /**
   * `Connection: close` on a response not yet started. Headers given to `writeHead` take
   * precedence over `setHeader` (and the MCP SDK names `Connection: keep-alive` on its event
   * streams), so a later `writeHead` has its own `Connection` dropped.
   */
  private markClose(response: ServerResponse): void {
    if (response.headersSent) return;
    response.setHeader('connection', 'close');
    const writeHead = response.writeHead.bind(response) as (...a: unknown[]) => ServerResponse;
    response.writeHead = ((...args: unknown[]) => writeHead(...args.map(withoutConnection)));
  }

  /** Ends `socket` after its queued output is flushed, unless another response is on it. */
  private endWhenIdle(socket: Socket): void {
    setImmediate(() => {
      if (socket.destroyed || (socket as Socket & { _httpMessage?: unknown })._httpMessage) return;
      socket.end(() => socket.destroy());
    });
  }
}

const isConnection = (name: unknown) => typeof name === 'string' && name.toLowerCase() === 'connection';

/** A `writeHead` argument with any `Connection` header removed (object, `[k, v]` pairs or flat list). */
function withoutConnection(arg: unknown): unknown {
  if (Array.isArray(arg)) {
    if (arg.every((entry) => Array.isArray(entry))) return (arg as unknown[][]).filter(([name]) => !isConnection(name));
    const flat: unknown[] = [];
    for (let i = 0; i + 1 < arg.length; i += 2) if (!isConnection(arg[i])) flat.push(arg[i], arg[i + 1]);
    return flat;
  }
  if (arg && typeof arg === 'object') return Object.fromEntries(Object.entries(arg).filter(([name]) => !isConnection(name)));
  return arg;
}
