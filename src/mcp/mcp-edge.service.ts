import { Injectable } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';
import { isLegacyRequest } from '@modelcontextprotocol/server';
import { UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import type { Principal } from '../auth/principal.js';
import { McpFastPath } from './edge/fast-path.js';
import { HostOriginCheck } from './edge/host-origin.js';
import { jsonRpcError } from './edge/json-rpc.js';
import { LegacyLifecycle, type LifecycleAnswer } from './edge/legacy-lifecycle.js';
import { LegacySessions } from './edge/legacy-sessions.js';
import { MCP_RETRY_AFTER_S, McpReadiness } from './edge/mcp-readiness.js';
import { NotificationFanout, STREAM_RETRY_AFTER_S, streamOwner } from './edge/notification-fanout.js';
import { SdkServing } from './edge/sdk-serving.js';
import { McpOperationPipeline } from './pipeline/mcp-operation-pipeline.js';

/** Most `resourceSubscriptions` one `subscriptions/listen` stream is given (the rest are left out of the acknowledged filter). */
export const MAX_LISTEN_RESOURCES = 100;

export { jsonRpcError };

/** An answer given before any MCP processing: status, JSON body, extra headers. */
export interface EarlyAnswer {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/**
 * The `/mcp` edge, in the order a request meets it:
 *
 * 1. {@link refuse}: readiness (503 while the `policies` or `servers` gate is not ok), Host and
 *    Origin (403, {@link HostOriginCheck}), the scope (404 for an unknown `/mcp/<server>`).
 * 2. {@link tryFast}: the fast path ({@link McpFastPath}) for steady-state calls of both eras;
 *    {@link tryLifecycle}: a legacy session's `initialize`, `notifications/initialized` and
 *    `DELETE` without the SDK ({@link LegacyLifecycle}).
 * 3. {@link handle}: everything else — modern requests through the SDK's `createMcpHandler`,
 *    legacy ones through the session transport ({@link LegacySessions}) around the SDK's
 *    stateless legacy serving ({@link SdkServing}); GET streams and DELETE are ours.
 *
 * Every MCP operation, whichever way it came, is decided and carried out by the
 * `McpOperationPipeline`. Notifications to clients: {@link NotificationFanout}.
 */
@Injectable()
export class McpEdgeService {
  constructor(
    private readonly upstreams: UpstreamServersService,
    private readonly readiness: McpReadiness,
    private readonly hostOrigin: HostOriginCheck,
    private readonly fast: McpFastPath,
    private readonly legacySessions: LegacySessions,
    private readonly sdk: SdkServing,
    private readonly fanout: NotificationFanout,
    private readonly pipeline: McpOperationPipeline,
    private readonly lifecycle: LegacyLifecycle,
  ) {}

  /**
   * The answer for a request `/mcp` must refuse before looking at it, or undefined: 503
   * `service_unavailable` (JSON-RPC error body, `Retry-After`) while this replica cannot
   * authorize or route; 403 for a foreign Host/Origin; 404 for an unknown or disabled scope.
   */
  refuse(headers: IncomingHttpHeaders, scope: string): EarlyAnswer | undefined {
    const notReady = this.readiness.notReady();
    if (notReady) return { status: 503, body: McpReadiness.body(notReady), headers: { 'retry-after': String(MCP_RETRY_AFTER_S) } };
    const origin = headers.origin;
    const problem = this.hostOrigin.problem(headers.host, typeof origin === 'string' ? origin : undefined);
    if (problem) return { status: 403, body: JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: problem }, id: null }), headers: {} };
    if (scope !== '' && !this.upstreams.catalog(scope)) {
      return { status: 404, body: JSON.stringify({ jsonrpc: '2.0', error: { code: -32600, message: `MCP server "${scope}" does not exist or is disabled` }, id: null }), headers: {} };
    }
    return undefined;
  }

  /** Ends every long-lived notification stream this replica holds (shutdown; see {@link NotificationFanout.endStreams}). */
  endStreams(): void {
    this.fanout.endStreams();
  }

  /** Registers a modern `subscriptions/listen` exchange so {@link endStreams} can end it. */
  holdListenStream(end: () => void): () => void {
    return this.fanout.holdListenStream(end);
  }

  /**
   * Like {@link holdListenStream}, counted against MCP_MAX_STREAMS_PER_PRINCIPAL for `principal`
   * (per client address without credentials): the release function, or the 429 answer when the
   * principal already holds its maximum of notification streams on this replica.
   */
  holdListenStreamFor(principal: Principal, clientAddress: string, end: () => void): { release: () => void } | { refused: EarlyAnswer } {
    const owner = streamOwner(principal, clientAddress);
    const refused = this.fanout.ownerRefusal(owner);
    if (refused) {
      const body = JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: refused }, id: null });
      return { refused: { status: 429, body, headers: { 'retry-after': String(STREAM_RETRY_AFTER_S) } } };
    }
    return { release: this.fanout.holdListenStream(end, owner) };
  }

  /**
   * Serves one HTTP request to `/mcp` (scope `''`) or `/mcp/<scope>` the full way. `parsedBody`
   * is the JSON body Fastify already parsed (undefined for GET/DELETE); `clientAddress` the
   * client's address (`request.ip`), which caps sessions opened without credentials.
   */
  async handle(request: Request, parsedBody: unknown, scope: string, principal: Principal, abort?: AbortController, clientAddress?: string): Promise<Response> {
    const rejected = this.hostOrigin.reject(request);
    if (rejected) return rejected;
    if (scope !== '' && !this.upstreams.catalog(scope)) {
      return jsonRpcError(404, -32600, `MCP server "${scope}" does not exist or is disabled`);
    }
    const handlers = this.sdk.handlersFor(scope);
    // The principal travels to the gateway server as the SDK's pass-through authInfo.
    const authInfo = { token: '', clientId: principal.id, scopes: principal.scopes, extra: { principal } };
    if (request.method === 'POST' && !(await isLegacyRequest(request, parsedBody))) {
      const uris = listenedResources(parsedBody);
      if (uris) return this.listenToResources(request, parsedBody, uris, scope, principal, (body) => handlers.modern.fetch(request, { parsedBody: body, authInfo }));
      return handlers.modern.fetch(request, { parsedBody, authInfo });
    }
    return this.legacySessions.handle(request, parsedBody, scope, handlers.legacy, principal, authInfo, abort, clientAddress);
  }

  /**
   * A 2026-07-28 `subscriptions/listen` naming `resourceSubscriptions` (MCP 2026-07-28,
   * basic/utilities/subscriptions): each URI is watched for `principal` as a 2025-era
   * `resources/subscribe` would be — known in `scope`, allowed like `resources/read`, its
   * upstream supporting subscriptions — through the same reference-counted upstream
   * subscription ({@link McpOperationPipeline.watch}); the URIs that cannot be watched are left
   * out of the filter the SDK serves, so its `notifications/subscriptions/acknowledged` tells
   * the client which are honored (at most {@link MAX_LISTEN_RESOURCES}). Updates reach the
   * stream through the SDK's listen router ({@link SdkServing.resourceUpdated}); the watches
   * end with the stream. A stream is held by the replica serving it: so are its watches.
   */
  private async listenToResources(
    request: Request,
    body: unknown,
    uris: string[],
    scope: string,
    principal: Principal,
    serve: (body: unknown) => Promise<Response>,
  ): Promise<Response> {
    const releases: (() => void)[] = [];
    const honored: string[] = [];
    await Promise.all(
      [...new Set(uris)].slice(0, MAX_LISTEN_RESOURCES).map(async (uri) => {
        try {
          const release = await this.pipeline.watch({ kind: 'resources/subscribe', scope, principal, params: { uri }, era: 'modern', path: 'sdk', signal: request.signal }, () =>
            this.sdk.resourceUpdated(scope, uri),
          );
          releases.push(release);
          honored.push(uri);
        } catch {
          // unknown, denied, or not subscribable: left out of the acknowledged filter
        }
      }),
    );
    const release = () => {
      for (const r of releases.splice(0)) r();
    };
    let response: Response;
    try {
      response = await serve(withResourceSubscriptions(body, honored));
    } catch (error) {
      release();
      throw error;
    }
    if (!response.body) {
      release();
      return response;
    }
    return new Response(endingWith(response.body, release), { status: response.status, headers: response.headers });
  }

  /** The fast path's JSON answer (a promise), or undefined: not the fast path's (see {@link McpFastPath.answer}); call {@link refuse} first. */
  tryFast(method: string, headers: IncomingHttpHeaders, body: unknown, scope: string, abort: AbortController, principal: Principal): Promise<string | Buffer | undefined> | undefined {
    return this.fast.answer(method, headers, body, scope, abort, principal);
  }

  /** The legacy lifecycle answer, or undefined (see {@link LegacyLifecycle.answer}); call {@link refuse} first. */
  tryLifecycle(method: string, headers: IncomingHttpHeaders, body: unknown, scope: string, principal: Principal, clientAddress: string): Promise<LifecycleAnswer | undefined> {
    return this.lifecycle.answer(method, headers, body, scope, principal, clientAddress);
  }
}

/** The `resourceSubscriptions` of a `subscriptions/listen` request body (strings only), or undefined for anything else. */
function listenedResources(body: unknown): string[] | undefined {
  const message = body as { method?: unknown; params?: { notifications?: { resourceSubscriptions?: unknown } } } | null;
  if (message?.method !== 'subscriptions/listen') return undefined;
  const uris = message.params?.notifications?.resourceSubscriptions;
  if (!Array.isArray(uris) || uris.length === 0 || !uris.every((u) => typeof u === 'string')) return undefined;
  return uris;
}

/** `body` (a `subscriptions/listen` request) with its `resourceSubscriptions` replaced by `uris` (removed when empty). */
function withResourceSubscriptions(body: unknown, uris: string[]): unknown {
  const message = body as { params: { notifications: Record<string, unknown> } };
  const { resourceSubscriptions: _asked, ...rest } = message.params.notifications;
  const notifications = uris.length > 0 ? { ...rest, resourceSubscriptions: uris } : rest;
  return { ...message, params: { ...message.params, notifications } };
}

/** `body`, calling `done` once when it ends, fails or is cancelled. */
function endingWith(body: ReadableStream<Uint8Array>, done: () => void): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      try {
        const { done: ended, value } = await reader.read();
        if (ended) {
          done();
          controller.close();
        } else controller.enqueue(value);
      } catch (error) {
        done();
        controller.error(error);
      }
    },
    cancel: async (reason) => {
      done();
      await reader.cancel(reason);
    },
  });
}
