import { Inject, Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import type { IncomingHttpHeaders } from 'node:http';
import { CLIENT_CAPABILITIES_META_KEY, PROTOCOL_VERSION_META_KEY, SUPPORTED_PROTOCOL_VERSIONS, classifyInboundRequest } from '@modelcontextprotocol/server';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import type { Principal } from '../../auth/principal.js';
import { McpOperationPipeline, toRpcError } from '../pipeline/mcp-operation-pipeline.js';
import { canWrapLikeSdk, responseAnswer } from '../pipeline/era.js';
import type { Catalog } from '../../upstreams/catalog.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import type { McpEra, McpOperationKind, McpParams } from '../pipeline/mcp-operation.js';
import type { CallingClient } from '../pipeline/server-requests.js';
import { LegacySessions, SESSION_HEADER } from './legacy-sessions.js';
import type { LiveSession } from '../../sessions/sessions.service.js';

/** 2025-era revisions a session may name in MCP-Protocol-Version. */
const LEGACY_VERSIONS = new Set(SUPPORTED_PROTOCOL_VERSIONS.filter((v) => v < '2026'));
/**
 * Modern revisions the fast path takes. The SDK does not export its list of modern revisions;
 * a revision missing here is simply served by the SDK (and one the SDK stops supporting would
 * fail the differential tests).
 */
const MODERN_VERSIONS = new Set(['2026-07-28']);
/** Methods the legacy fast path answers itself (the bulk of steady-state traffic). */
const LEGACY_METHODS = new Set<string>(['tools/call', 'tools/list', 'ping']);
/** Methods the modern fast path answers itself. */
const MODERN_METHODS = new Set<string>(['tools/call', 'tools/list']);
/** Distinct `_meta` envelopes whose verdict is remembered (a client sends the same one every time). */
const ENVELOPE_CACHE_MAX = 1_000;
/** Envelopes longer than this (JSON characters) are not remembered, only checked. */
const ENVELOPE_KEY_MAX = 4_096;
/** `Mcp-Name` values in this form are Base64-encoded (SEP-2243): left to the SDK to decode. */
const BASE64_SENTINEL = '=?';

interface Message {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}
interface Params {
  name?: unknown;
  arguments?: unknown;
  task?: unknown;
  /** MRTR retry (2026-07-28): the answers to an input_required round, and its state. */
  inputResponses?: unknown;
  requestState?: unknown;
  _meta?: Record<string, unknown>;
}

/** The calling client of a modern fast-path tools/call: envelope capabilities and MRTR answers (see {@link CallingClient}). */
function modernClient(params: Params): CallingClient {
  const responses = params.inputResponses;
  return {
    capabilities: params._meta?.[CLIENT_CAPABILITIES_META_KEY] as Record<string, unknown> | undefined,
    inputResponses: typeof responses === 'object' && responses !== null && !Array.isArray(responses) ? (responses as Record<string, unknown>) : undefined,
    requestState: typeof params.requestState === 'string' ? params.requestState : undefined,
  };
}

/**
 * The fast path: answers the steady-state requests whose answer cannot differ from the SDK's —
 * a validated legacy session's `tools/call` (no progress token), `tools/list`, `ping`; a
 * modern (2026-07-28) `tools/call` / `tools/list` whose headers and envelope the SDK's own
 * classifier accepts — as plain JSON straight from the parsed request, without a web
 * Request/Response or an SDK server and transport per call (measured: that per-request SDK
 * serving costs more than the whole forward). Operations go through the same
 * {@link McpOperationPipeline} as the SDK's handlers. Returns the JSON (text or UTF-8 bytes), or undefined for
 * anything else or anything unusual (a batch, a progress token, malformed params, a client
 * that does not accept JSON, an unknown session, disagreeing headers):
 * the full path then answers it, with the SDK owning the spec's validation and error statuses.
 * Differential tests (`test/e2e/mcp-differential.test.ts`) hold both paths to the same answers.
 */
@Injectable()
export class McpFastPath {
  private readonly enabled: boolean;
  /** Per catalog: whether a tool's output schema needs the SDK's reference rewriting for 2025-era clients (then legacy tools/list is the SDK's). */
  private readonly legacyWrap = new WeakMap<Catalog, boolean>();
  /** `_meta` JSON → whether the SDK's classifier takes such a request as modern (its envelope check costs ~40 µs). */
  private readonly envelopes = new LRUCache<string, boolean>({ max: ENVELOPE_CACHE_MAX });

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly pipeline: McpOperationPipeline,
    private readonly sessions: LegacySessions,
    private readonly upstreams: UpstreamServersService,
  ) {
    this.enabled = config.mcp.fastPath;
  }

  /**
   * The JSON answer (text, or its UTF-8 bytes for a list answered from preserialized bytes, see
   * {@link responseAnswer}), or undefined: serve it the full way — undefined at once when the request
   * is not the fast path's, or a promise of the answer (of undefined when a legacy session
   * turns out not to be served here after loading it). The caller has already refused a
   * foreign Host/Origin, an unknown scope and an unready replica ({@link McpEdgeService.refuse}).
   * Throws only what a programming error would.
   */
  answer(method: string, headers: IncomingHttpHeaders, body: unknown, scope: string, abort: AbortController, principal: Principal): Promise<string | Buffer | undefined> | undefined {
    if (!this.enabled || method !== 'POST') return undefined;
    const version = headers['mcp-protocol-version'];
    if (typeof version !== 'string') return undefined;
    if (!(headers.accept ?? '').includes('application/json') || !(headers['content-type'] ?? '').startsWith('application/json')) return undefined;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined;
    const message = body as Message;
    if (message.jsonrpc !== '2.0' || typeof message.method !== 'string') return undefined;
    if (typeof message.id !== 'string' && typeof message.id !== 'number') return undefined;
    const params = (message.params ?? {}) as Params;
    if (typeof params !== 'object' || params === null || Array.isArray(params)) return undefined;
    // `_meta` must be an object (else the SDK answers the invalid params); a progress token
    // needs a streamed answer; task-augmented calls are the SDK's.
    const meta: unknown = params._meta;
    if (meta !== undefined && (typeof meta !== 'object' || meta === null || Array.isArray(meta))) return undefined;
    if (params._meta?.progressToken !== undefined || params.task !== undefined) return undefined;
    if (message.method === 'tools/call') {
      if (typeof params.name !== 'string') return undefined;
      if (params.arguments !== undefined && (typeof params.arguments !== 'object' || params.arguments === null || Array.isArray(params.arguments))) return undefined;
    }

    if (LEGACY_VERSIONS.has(version)) {
      const token = headers[SESSION_HEADER];
      if (typeof token !== 'string' || !LEGACY_METHODS.has(message.method)) return undefined;
      // An envelope claim makes it modern traffic.
      if (params._meta && PROTOCOL_VERSION_META_KEY in params._meta) return undefined;
      if (message.method === 'tools/list' && this.wrapsTools(scope)) return undefined;
      // Steady state: the cached session, decided without a promise; else the full check.
      const session = this.sessions.sessionForNow(token, scope, principal);
      if (session) return this.runLegacy(session, message, params, scope, abort, principal);
      return this.sessions.sessionFor(token, scope, principal).then((loaded) => (loaded ? this.runLegacy(loaded, message, params, scope, abort, principal) : undefined));
    }

    if (MODERN_VERSIONS.has(version)) {
      if (!MODERN_METHODS.has(message.method) || headers[SESSION_HEADER] !== undefined) return undefined;
      // The Accept the SDK's modern serving expects (it may stream), and consistent headers.
      if (!(headers.accept ?? '').includes('text/event-stream')) return undefined;
      const mcpMethod = headers['mcp-method'];
      const mcpName = headers['mcp-name'];
      if (mcpMethod !== message.method || !params._meta || params._meta[PROTOCOL_VERSION_META_KEY] !== version) return undefined;
      if (message.method === 'tools/call' && (mcpName !== params.name || (mcpName as string).startsWith(BASE64_SENTINEL))) return undefined;
      if (message.method !== 'tools/call' && mcpName !== undefined) return undefined;
      if (!this.modernEnvelope(params._meta, body, version, mcpMethod, mcpName as string | undefined)) return undefined;
      return this.run('modern', message.method as McpOperationKind, message.id, params, scope, abort, principal, message.method === 'tools/call' ? modernClient(params) : undefined);
    }
    return undefined;
  }

  /**
   * Whether the SDK's own classifier takes this request as a modern request (the `_meta`
   * envelope is well-formed: protocol version, client capabilities, client info). Headers
   * and body were already checked to agree, so the verdict depends on the envelope alone and
   * is remembered per distinct envelope.
   */
  private modernEnvelope(meta: Record<string, unknown>, body: unknown, version: string, mcpMethod: string, mcpName: string | undefined): boolean {
    const key = JSON.stringify(meta);
    const known = key.length <= ENVELOPE_KEY_MAX ? this.envelopes.get(key) : undefined;
    if (known !== undefined) return known;
    const route = classifyInboundRequest({ httpMethod: 'POST', body, protocolVersionHeader: version, mcpMethodHeader: mcpMethod, mcpNameHeader: mcpName });
    const modern = route.kind === 'modern' && route.messageKind === 'request';
    if (key.length <= ENVELOPE_KEY_MAX) this.envelopes.set(key, modern);
    return modern;
  }

  private wrapsTools(scope: string): boolean {
    const catalog = this.upstreams.catalog(scope);
    if (!catalog) return true;
    let wraps = this.legacyWrap.get(catalog);
    if (wraps === undefined) this.legacyWrap.set(catalog, (wraps = !catalog.tools.every(canWrapLikeSdk)));
    return wraps;
  }

  /** A legacy session's request, findable by notifications/cancelled while it runs (see {@link run}). */
  private runLegacy(session: LiveSession, message: Message, params: Params, scope: string, abort: AbortController, principal: Principal): Promise<string | Buffer> {
    const client = message.method === 'tools/call' ? { capabilities: session.capabilities, sessionId: session.id } : undefined;
    return this.run('legacy', message.method as McpOperationKind, message.id as string | number, params, scope, abort, principal, client, session);
  }

  /**
   * Runs one operation and answers it as JSON text. With `session` (legacy), the request is
   * tracked for notifications/cancelled until it is over — as {@link LegacySessions.tracked}
   * does, without its closure and extra promise per call.
   */
  private async run(
    era: McpEra,
    kind: McpOperationKind,
    id: string | number,
    params: Params,
    scope: string,
    abort: AbortController,
    principal: Principal,
    client?: CallingClient,
    session?: LiveSession,
  ): Promise<string | Buffer> {
    const tracked = session ? this.sessions.track(session, id, abort) : undefined;
    try {
      const result = await this.pipeline.run({ kind, scope, principal, params: params as McpParams[typeof kind], era, path: 'fast', signal: abort.signal, client });
      return responseAnswer(era, kind, id, result);
    } catch (error) {
      if (abort.signal.aborted) return JSON.stringify({ jsonrpc: '2.0', id, error: { code: -32603, message: 'Request cancelled by the client' } });
      return JSON.stringify({ jsonrpc: '2.0', id, error: toRpcError(error) });
    } finally {
      if (tracked !== undefined) this.sessions.untrack(tracked, abort);
    }
  }
}
