import { connect, createServer, type Server, type Socket } from 'node:net';

/**
 * A TCP load balancer for replica tests: listens on a free 127.0.0.1 port (the deployment's
 * PUBLIC_URL) and forwards each new connection to the current target, which the test sets
 * (and may switch: open connections keep their replica, as behind a real balancer).
 */
export class Balancer {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;
  /** `host:port` connections go to; set before the first request. */
  target: { host: string; port: number } | undefined;

  static async start(): Promise<Balancer> {
    const balancer = new Balancer();
    balancer.server = createServer((client) => balancer.accept(client));
    await new Promise<void>((resolve) => balancer.server.listen(0, '127.0.0.1', resolve));
    const address = balancer.server.address();
    balancer.port = typeof address === 'object' && address ? address.port : 0;
    return balancer;
  }

  /** `http://127.0.0.1:<port>`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Sends new connections to the server at `url` (e.g. a Gatehouse's `url`). */
  pointAt(url: string): void {
    const u = new URL(url);
    this.target = { host: u.hostname, port: Number(u.port) };
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: Socket): void {
    if (!this.target) {
      client.destroy();
      return;
    }
    const upstream = connect(this.target.port, this.target.host);
    for (const socket of [client, upstream]) {
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
}
