import { All, Controller, Param, Req, Res } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { CurrentPrincipal, McpEndpoint, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { REQUEST_ID_HEADER } from '../common/http/request-id.js';
import { McpEdgeService, type EarlyAnswer } from './mcp-edge.service.js';
import type { LifecycleAnswer } from './edge/legacy-lifecycle.js';
import { protectedIds, restoreIds } from '../common/http/json-rpc-ids.js';
import { releaseAnswer } from './pipeline/era.js';

/** Bridges Fastify to the web-standard `Request`/`Response` the MCP SDK's serving entries take. */
function toWebRequest(req: FastifyRequest, signal: AbortSignal): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  return new Request(`http://${req.headers.host ?? 'localhost'}${req.url}`, { method: req.method, headers, signal });
}

/** Writes an answer made whole without the SDK, framed as {@link sendWebResponse} frames the SDK's. */
function sendAnswer(reply: FastifyReply, answer: LifecycleAnswer, requestId: string, ids?: Map<string, string>): void {
  reply.hijack();
  reply.raw.writeHead(answer.status, { [REQUEST_ID_HEADER]: requestId, ...answer.headers });
  if (answer.body !== undefined) reply.raw.write(restoreIds(answer.body, ids));
  reply.raw.end();
}

async function sendWebResponse(reply: FastifyReply, response: Response, requestId: string, ids?: Map<string, string>): Promise<void> {
  reply.hijack();
  const raw = reply.raw;
  const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId };
  response.headers.forEach((value, name) => (headers[name] = value));
  if (ids) delete headers['content-length']; // restored ids may be longer than their placeholders
  raw.writeHead(response.status, headers);
  if (response.body) {
    const reader = (response.body as ReadableStream<Uint8Array>).getReader();
    raw.once('close', () => void reader.cancel().catch(() => undefined));
    try {
      // The SDK enqueues each JSON answer and SSE event whole, so an id is never split across chunks.
      const decoder = ids ? new TextDecoder() : undefined;
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        raw.write(decoder ? restoreIds(decoder.decode(value, { stream: true }), ids) : value);
      }
    } catch {
      // the client went away mid-stream
    }
  }
  raw.end();
}

/** Sends an answer given before any MCP processing (JSON body). */
async function sendEarly(reply: FastifyReply, early: EarlyAnswer): Promise<void> {
  await reply.status(early.status).headers({ ...early.headers, 'content-type': 'application/json' }).send(early.body);
}

/**
 * A 2025-era (session) POST: it carries `Mcp-Session-Id`, or is the `initialize` that opens
 * one. Its client going away is not a cancellation — MCP 2025-06-18 basic/transports,
 * "Sending Messages to the Server": "Disconnection SHOULD NOT be interpreted as the client
 * cancelling its request. To cancel, the client SHOULD explicitly send an MCP
 * CancelledNotification" — so the call runs on (and the upstream is not told to stop).
 * A 2026-07-28 request is the opposite: "Closing the SSE response stream MUST be treated by
 * the server as cancellation of that request" (2026-07-28 basic/transports/streamable-http,
 * "Cancellation"). GET streams end with their connection in both eras.
 */
function isLegacyPost(req: FastifyRequest): boolean {
  if (req.method !== 'POST') return false;
  return req.headers['mcp-session-id'] !== undefined || (req.body as { method?: unknown } | null)?.method === 'initialize';
}

/**
 * `/mcp` (every upstream, names namespaced) and `/mcp/<server>` (one upstream, its own names),
 * for both protocol eras. Authentication wraps these routes through the global guard.
 */
@Controller('mcp')
@RequiresPermission('mcp')
@McpEndpoint()
export class McpController {
  constructor(private readonly edge: McpEdgeService) {}

  @All()
  aggregated(@Req() req: FastifyRequest, @Res() reply: FastifyReply, @CurrentPrincipal() principal: Principal): Promise<void> {
    return this.serve(req, reply, '', principal);
  }

  @All(':server')
  single(
    @Param('server') server: string,
    @Req() req: FastifyRequest,
    @Res() reply: FastifyReply,
    @CurrentPrincipal() principal: Principal,
  ): Promise<void> {
    return this.serve(req, reply, server, principal);
  }

  /**
   * Serves one request to `/mcp` (`scope` '') or `/mcp/<scope>` for an admitted `principal`
   * (the one the auth guard set): refusals, then the fast path (a steady-state call answered
   * as plain JSON, without an `async` frame or extra promise of its own here), then
   * {@link full}. Called by the two Nest routes above and, for POSTs, by the MCP lane
   * (`edge/lane.ts`) after the same global guards. Answers on `reply` (hijacking it for
   * streamed and lifecycle answers); the promise settles once the answer is written and
   * rejects only with what the exception filter is to render.
   */
  serve(req: FastifyRequest, reply: FastifyReply, scope: string, principal: Principal): Promise<void> {
    const abort = new AbortController();
    // Only a request its client's disconnect cancels listens for it (see isLegacyPost); a
    // response emits 'close' once.
    if (!isLegacyPost(req)) {
      reply.raw.on('close', () => {
        if (!reply.raw.writableFinished) abort.abort();
      });
    }
    const early = this.edge.refuse(req.headers, scope);
    if (early) return sendEarly(reply, early);
    const ids = protectedIds(req.raw);
    const fast = this.edge.tryFast(req.method, req.headers, req.body, scope, abort, principal);
    if (fast === undefined) return this.full(req, reply, scope, principal, abort, ids);
    return fast.then((json) => {
      if (json === undefined) return this.full(req, reply, scope, principal, abort, ids);
      // Written at once (no onSend hook): nothing to wait for. The content type as Fastify
      // completes a JSON one (it would append the charset on every reply). Kept on reply.send
      // rather than hijacking and writing raw: measured (bench/profile.mjs, alloc.mjs, 2026-11-30)
      // Fastify's own part of it is ~0.8 µs and ~230 B per call (content type parse cached, no
      // onSend hook: straight to writeHead + end; the rest is the socket write either way), and a
      // raw write would need Fastify internals to stay byte-identical and skip later onSend hooks.
      // A whole tools list comes as UTF-8 bytes (era.ts responseAnswer): Fastify sends a Buffer
      // as it is (content type already set; content-length its length), with no re-encoding.
      const answer = restoreIds(json, ids);
      void reply.status(200).header('content-type', 'application/json; charset=utf-8').send(answer);
      // Bytes from a reusable block (era.ts responseAnswer): given back only when the whole
      // response already went to the socket (writableFinished: nothing queued in the response
      // or the socket, so nothing refers to the bytes any more); else it is left to the GC.
      if (typeof answer !== 'string' && reply.raw.writableFinished) releaseAnswer(answer);
    });
  }

  /** Everything the fast path leaves: the legacy lifecycle, then the SDK's serving. */
  private async full(req: FastifyRequest, reply: FastifyReply, scope: string, principal: Principal, abort: AbortController, ids: Map<string, string> | undefined): Promise<void> {
    const lifecycle = await this.edge.tryLifecycle(req.method, req.headers, req.body, scope, principal, req.ip);
    if (lifecycle) {
      sendAnswer(reply, lifecycle, req.id, ids);
      return;
    }
    const isListen = (req.body as { method?: unknown } | null)?.method === 'subscriptions/listen';
    let release: (() => void) | undefined;
    if (isListen) {
      const held = this.edge.holdListenStreamFor(principal, req.ip, () => {
        abort.abort();
        reply.raw.end();
      });
      if ('refused' in held) return sendEarly(reply, held.refused);
      release = held.release;
    }
    try {
      const response = await this.edge.handle(toWebRequest(req, abort.signal), req.body, scope, principal, abort, req.ip);
      await sendWebResponse(reply, response, req.id, ids);
    } finally {
      release?.();
    }
  }
}
