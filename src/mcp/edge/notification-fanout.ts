import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { SessionsService, type LiveSession } from '../../sessions/sessions.service.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import { jsonRpcError } from './json-rpc.js';
import { SdkServing } from './sdk-serving.js';

/** Interval of SSE comment lines on held legacy GET streams, in ms (keeps proxies from timing out). */
export const KEEPALIVE_MS = 15_000;

interface HeldStream {
  sessionId: string;
  scope: string;
  write(chunk: string): void;
  close(): void;
}

/**
 * Server-to-client notifications: the legacy GET streams this replica holds (one per session
 * that opened one) and the modern `subscriptions/listen` streams (served by the SDK). When an
 * upstream's catalog changes (observed on every replica from the change bus), each stream whose
 * scope includes it gets `notifications/tools/list_changed`. A closed session's streams end.
 */
@Injectable()
export class NotificationFanout implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly streams = new Set<HeldStream>();
  private readonly listenStreams = new Set<() => void>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly upstreams: UpstreamServersService,
    private readonly sessions: SessionsService,
    private readonly sdk: SdkServing,
  ) {}

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.upstreams.onToolsChanged((server) => this.catalogChanged(server)),
      this.sessions.onClosed((id) => {
        for (const stream of this.streams) if (stream.sessionId === id) stream.close();
      }),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.endStreams();
  }

  /** Ends every long-lived stream this replica holds (shutdown: clients reconnect elsewhere). */
  endStreams(): void {
    for (const stream of this.streams) stream.close();
    for (const end of this.listenStreams) end();
    this.listenStreams.clear();
  }

  /** Registers a modern `subscriptions/listen` exchange so {@link endStreams} can end it; returns its removal. */
  holdListenStream(end: () => void): () => void {
    this.listenStreams.add(end);
    return () => this.listenStreams.delete(end);
  }

  /** The legacy server-to-client stream of `session`: list-changed notifications and keep-alives. */
  openStream(request: Request, session: LiveSession): Response {
    if (!(request.headers.get('accept') ?? '').includes('text/event-stream')) {
      return jsonRpcError(406, -32000, 'Not Acceptable: the GET stream needs Accept: text/event-stream');
    }
    const encoder = new TextEncoder();
    let held: HeldStream | undefined;
    let keepalive: NodeJS.Timeout | undefined;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        const stream: HeldStream = {
          sessionId: session.id,
          scope: session.endpoint,
          write: (chunk) => {
            try {
              controller.enqueue(encoder.encode(chunk));
            } catch {
              stream.close();
            }
          },
          close: () => {
            if (!this.streams.delete(stream)) return;
            clearInterval(keepalive);
            try {
              controller.close();
            } catch {
              // already closed by the client
            }
          },
        };
        held = stream;
        this.streams.add(stream);
        keepalive = setInterval(() => stream.write(': keepalive\n\n'), KEEPALIVE_MS);
        keepalive.unref();
        stream.write(': stream open\n\n');
      },
      cancel: () => held?.close(),
    });
    request.signal.addEventListener('abort', () => held?.close(), { once: true });
    return new Response(body, {
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform', connection: 'keep-alive' },
    });
  }

  /** Something an upstream offers changed: tell the clients whose view includes it. */
  private catalogChanged(server: string): void {
    const message = `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })}\n\n`;
    for (const stream of this.streams) if (stream.scope === '' || stream.scope === server) stream.write(message);
    this.sdk.toolsChanged(server);
  }
}
