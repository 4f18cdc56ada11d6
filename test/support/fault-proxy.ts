import { createServer, connect, type Server, type Socket } from 'node:net';

/** `pass`: forward bytes; `freeze`: accept and hold every byte (a hung server); `cut`: reset every connection. */
export type FaultMode = 'pass' | 'freeze' | 'cut';

/**
 * A TCP proxy between the app and a real server (here PostgreSQL) that can fail on command,
 * so outage tests never touch the shared server itself.
 *
 * - `freeze` models a frozen server (SIGSTOP, a stalled VM, a partition): connections are
 *   accepted, nothing is forwarded either way and nothing is closed; bytes wait (in the
 *   kernel's buffers, by pausing the sockets) and flow again on `pass`.
 * - `cut` models a stopped server: open connections are destroyed and new ones are
 *   accepted and destroyed at once.
 */
export class FaultProxy {
  private mode: FaultMode = 'pass';
  private readonly pairs = new Set<[Socket, Socket]>();
  private server!: Server;
  port = 0;

  private constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  /** Starts a proxy on a free 127.0.0.1 port forwarding to `target` (`host:port`). */
  static async start(targetHost: string, targetPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(targetHost, targetPort);
    proxy.server = createServer((client) => proxy.accept(client));
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    const address = proxy.server.address();
    proxy.port = typeof address === 'object' && address ? address.port : 0;
    return proxy;
  }

  /** `url` with its host and port replaced by the proxy's. */
  rewrite(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }

  /** Connections currently open through the proxy. */
  get connections(): number {
    return this.pairs.size;
  }

  set(mode: FaultMode): void {
    this.mode = mode;
    for (const pair of this.pairs) {
      if (mode === 'cut') {
        this.destroy(pair);
        continue;
      }
      for (const socket of pair) {
        if (mode === 'freeze') socket.pause();
        else socket.resume();
      }
    }
  }

  async close(): Promise<void> {
    this.set('cut');
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (this.mode === 'cut') {
      client.destroy();
      return;
    }
    const upstream = connect(this.targetPort, this.targetHost);
    const pair: [Socket, Socket] = [client, upstream];
    this.pairs.add(pair);
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    upstream.on('data', (chunk: Buffer) => client.write(chunk));
    for (const socket of pair) {
      socket.on('error', () => this.destroy(pair));
      socket.on('close', () => this.destroy(pair));
      if (this.mode === 'freeze') socket.pause();
    }
  }

  private destroy(pair: [Socket, Socket]): void {
    this.pairs.delete(pair);
    for (const socket of pair) socket.destroy();
  }
}
