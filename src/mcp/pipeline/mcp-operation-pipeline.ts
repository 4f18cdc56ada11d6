import { Inject, Injectable, Optional, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { ProtocolError, ProtocolErrorCode, type CallToolResult } from '@modelcontextprotocol/server';
import { startingError, waitForStarting } from './starting-servers.js';
import { PinoLogger } from 'nestjs-pino';
import type { Principal } from '../../auth/principal.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import { CONNECT_TOOL_NAME, NAME_SEPARATOR, type Catalog, type Target } from '../../upstreams/catalog.js';
import { PoliciesService } from '../../policies/policies.service.js';
import { SecretsService } from '../../secrets/secrets.service.js';
import { isSharedRoute, listThroughCaller, NO_INJECT, routeCall, type Route, type RouteServices } from '../upstream-route.js';
import { authErrorIn, UpstreamAuthError } from '../../upstreams/auth-challenge.js';
import { UpstreamConnectionsService, type ConnectRequest, type UsableToken } from '../../upstream-oauth/upstream-connections.service.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { RESYNC_TOPIC } from '../../database/change-bus.js';
import { UPSTREAM_OAUTH_CHANGED } from '../../upstream-oauth/upstream-oauth.topics.js';
import { SHARED_CONNECTION_OWNER } from '../../upstream-oauth/token-sealing.js';
import { ConnectAsk, declinedConnect, isConnectRequestState } from '../../upstream-connect/connect-ask.service.js';

const LISTS = new Set<string>(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list']);
import { assertAuthorized, authorize, policySubject, type AuthorizedOperation } from './authorized-operation.js';
import { McpOperationHookProvider, type McpOperationHook } from './mcp-operation-hooks.js';
import type { ClassifiedOperation, McpOperationKind, McpOperationRequest, McpOutcome } from './mcp-operation.js';
import { ClientRequests, InputRequiredBroker } from './server-requests.js';
import { SessionSubscriptions } from './resource-subscriptions.js';
import { LogLevels, type LogLevel } from './log-levels.js';
import type { UpstreamCaller } from '../../upstreams/upstream-callers.js';
import type { UpstreamConnection } from '../../upstreams/upstream-connection.js';

/** Capabilities that let a client answer an upstream's requests; a 2026-07-28 client with none never needs the MRTR broker. */
const answersRequests = (capabilities: Record<string, unknown> | undefined) =>
  capabilities !== undefined && (capabilities.sampling !== undefined || capabilities.elicitation !== undefined || capabilities.roots !== undefined);
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { withAggregatedUris } from './result-uris.js';
import { DEFAULT_LIST_PAGE_SIZE, paginate, type PaginatedKind } from './pagination.js';

/** A client-sent name as echoed in an error: at most 200 characters (a 200 KB name is not sent back whole). */
const echoed = (name: string): string => (name.length > 200 ? `${name.slice(0, 200)}… (${name.length} characters)` : name);

/**
 * A result may carry its JSON text already serialized under this key (not enumerable on the
 * wire: symbols are skipped by JSON.stringify): `{ field, json }`, the value of `result[field]`
 * as JSON. The fast path splices it in instead of serializing a 60 KB tools list per request.
 */
export const PRESERIALIZED = Symbol('preserialized');
export interface Preserialized {
  [PRESERIALIZED]?: { readonly field: string; readonly json: string };
}

const toolsPreserialized = new WeakMap<readonly unknown[], { readonly field: string; readonly json: string }>();

/**
 * The preserialized `tools` of a list (`json` = `JSON.stringify(tools)`): one frozen object per
 * tools array (a catalog's, or a policy view's subset; both immutable), so what the edge caches
 * per preserialized value (the answer's bytes, `era.ts`) lives as long as the list and no longer.
 */
function preserializedTools(tools: readonly unknown[], json: string): { readonly field: string; readonly json: string } {
  let pre = toolsPreserialized.get(tools);
  if (pre === undefined) toolsPreserialized.set(tools, (pre = Object.freeze({ field: 'tools', json })));
  return pre;
}

const errorText = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 500);
const isTimeout = (error: unknown) => error instanceof Error && /timed? ?out/i.test(error.message);

/** A tool call that cannot reach its upstream: a result the model can read, not a protocol error. */
function upstreamFailure(server: string, problem: string): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: `Upstream MCP server "${server}" failed: ${problem}` }] };
}

/** A route problem a `tools/call` reports as its result (the caller cannot or need not be asked to connect). */
const toolProblem = (problem: { problem: string }): CallToolResult => ({ isError: true, content: [{ type: 'text', text: problem.problem }] });

/**
 * What Gatehouse's connect tool answers a caller already connected to `server` (their
 * connection just listed the server's tools, which every session is told of with
 * `notifications/tools/list_changed`).
 */
function connectedResult(server: string, scope: string): CallToolResult {
  const names = scope === '' ? `${server}${NAME_SEPARATOR}<tool>` : 'their own names';
  return { content: [{ type: 'text', text: `Your ${server} account is connected. Its tools are listed as ${names}; list the tools again to see them.` }] };
}

/** An upstream refused the caller's OAuth token (401/403) before running the call; handled by `withOAuthRetry`. */
class OAuthRefusal extends Error {
  constructor(
    readonly error: UpstreamAuthError,
    readonly token: UsableToken,
    readonly principal?: Principal,
  ) {
    super(error.message);
  }
}

/** A per-caller OAuth connection whose start the upstream refused with 401/403 (`lastError` says so): the same as a refused call. */
function refusedAtStart(route: Route | undefined, lastError: string | null | undefined, principal: Principal): void {
  if (!route || !('oauth' in route) || !route.oauth || !lastError) return;
  const status = /^HTTP (401|403)\b/.exec(lastError)?.[1];
  if (!status) return;
  const error = /insufficient_scope/.test(lastError) ? 'insufficient_scope' : 'invalid_token';
  throw new OAuthRefusal(new UpstreamAuthError(Number(status) as 401 | 403, { error }), route.oauth, principal);
}

/** Re-raises an upstream failure as a protocol error that names the server. */
function named(target: Target, error: unknown): never {
  if (error instanceof ProtocolError) throw new ProtocolError(error.code, `Upstream MCP server "${target.server}": ${error.message}`, error.data);
  throw new ProtocolError(ProtocolErrorCode.InternalError, `Upstream MCP server "${target.server}" failed: ${errorText(error)}`);
}

/**
 * The JSON-RPC error a thrown value becomes for the client (and the hooks) — the SDK's rule
 * (`Protocol` request dispatch), so both paths answer alike: the error's `code` when it is a
 * safe integer, else -32603; its message; its `data` if any. -32002 (resource not found) is
 * sent as -32602 in both eras, as the SDK's codecs do.
 */
export function toRpcError(error: unknown): { code: number; message: string; data?: unknown } {
  const e = (typeof error === 'object' && error !== null ? error : {}) as { code?: unknown; message?: unknown; data?: unknown };
  const thrown = Number.isSafeInteger(e.code) ? (e.code as number) : ProtocolErrorCode.InternalError;
  const message = typeof e.message === 'string' ? e.message : 'Internal error';
  return { code: thrown === -32002 ? -32602 : thrown, message, ...(e.data === undefined ? {} : { data: e.data }) };
}

const ns = (target: Target) => `${target.server}${NAME_SEPARATOR}${target.name}`;

/**
 * The policy check of a `tools/call` on `target`, one frozen object per target: a catalog's
 * targets live as long as the catalog, so a steady stream of calls builds neither the object
 * nor the namespaced name (a string the decision memo would flatten again) per call.
 */
const toolPolicies = new WeakMap<Target, { operation: 'tools/call'; name: string }>();
function toolPolicy(target: Target): { operation: 'tools/call'; name: string } {
  let policy = toolPolicies.get(target);
  if (!policy) toolPolicies.set(target, (policy = Object.freeze({ operation: 'tools/call' as const, name: ns(target) })));
  return policy;
}

/** A 2026-07-28 client that declared none of sampling, elicitation, roots: every upstream request is refused (the capability check comes first). */
const refuseRequest: UpstreamCaller['request'] = (method) => Promise.reject(new ProtocolError(ProtocolErrorCode.InternalError, `BUG: ${method} reached a client without the capability`));

/**
 * The upstream requests of a 2026-07-28 client's `method`, which has no `input_required` (MCP
 * 2026-07-28 basic/patterns/mrtr lists tools/call, prompts/get and resources/read): refused
 * with -32600 naming why (after the capability check, which refuses first with -32021).
 */
const refuseOutsideMrtr =
  (during: string): UpstreamCaller['request'] =>
  (method) =>
    Promise.reject(new ProtocolError(ProtocolErrorCode.InvalidRequest, `Gatehouse cannot ask a 2026-07-28 client for ${method} during ${during} (input_required is not available for it)`));

/**
 * The one place every MCP operation is decided and carried out, whichever edge received it
 * (the legacy or modern fast path, the SDK's serving of either era):
 *
 * 1. classify — the operation kind, its scope's catalog, its target (`<server>`, the
 *    upstream's own name) and the policy check it needs; an unknown name is `-32602`.
 * 2. authorize — the policy decision ({@link authorize}); only its {@link AuthorizedOperation}
 *    can be routed, so no handler can call an upstream without it.
 * 3. hooks `beforeCall` — rate limiter, audit start ({@link McpOperationHook}).
 * 4. route — the connection this caller uses (`upstream-route.ts`: shared, or pooled per user).
 * 5. call — forward to the upstream, with its timeout and the client's abort signal.
 * 6. outcome — upstream failures mapped (tool calls: an `isError` result naming the server; the
 *    rest: a protocol error naming it). Encoding for the client's era is the edge's last step
 *    (`era.ts` on the fast path, the SDK's encoder on its path).
 * 7. hooks `afterCall` — audit end, metrics.
 *
 * With no hook registered, steps 3 and 7 cost nothing (no allocation, no await).
 */
@Injectable()
export class McpOperationPipeline implements OnModuleInit {
  private hooks: McpOperationHook[] = [];
  /** Whether any hook has `afterCall`: without one, a call needs no clock reading, outcome object or async wrapper ({@link hooked}). */
  private afterHooks = false;
  private readonly templateViews = new WeakMap<object, Catalog['resourceTemplates']>();
  private readonly pageSize: number;
  private readonly routing: RouteServices;

  constructor(
    private readonly upstreams: UpstreamServersService,
    private readonly policies: PoliciesService,
    private readonly secrets: SecretsService,
    private readonly discovery: DiscoveryService,
    private readonly logger: PinoLogger,
    private readonly clientRequests: ClientRequests,
    private readonly inputs: InputRequiredBroker,
    private readonly logLevels: LogLevels,
    private readonly subscriptions: SessionSubscriptions,
    private readonly connections: UpstreamConnectionsService,
    private readonly connectAsk: ConnectAsk,
    @Optional() @Inject(APP_CONFIG) config?: AppConfig,
    @Optional() private readonly bus?: ChangeBusService,
  ) {
    logger.setContext('McpPipeline');
    this.routing = { upstreams, secrets, connections };
    this.pageSize = config?.mcp.listPageSize ?? DEFAULT_LIST_PAGE_SIZE;
  }

  onModuleInit(): void {
    const found = this.discovery
      .getProviders({ metadataKey: McpOperationHookProvider.KEY })
      .filter((w) => w.instance)
      .map((w) => ({ hook: w.instance as McpOperationHook, order: this.discovery.getMetadataByDecorator(McpOperationHookProvider, w)?.order ?? 0 }));
    this.setHooks(found.sort((a, b) => a.order - b.order).map((f) => f.hook));
    this.bus?.subscribe(UPSTREAM_OAUTH_CHANGED, (event) => {
      if (event.topic !== RESYNC_TOPIC) void this.listForNewConnection(event.data.server, event.data.owner);
    });
  }

  /**
   * A user's OAuth connection to `server` was stored (e.g. the connect flow's callback): when no
   * catalog of the server is known on this replica (it shows the connect tool), list it through
   * that user's connection now, so the real tools replace the connect tool and every session is
   * told (`notifications/tools/list_changed`) without waiting for the user's next call. `owner`
   * is the connection's owner key (`secretOwner`: the user id, else the principal id); `*` (the
   * shared connection) lists nothing here. Never throws.
   */
  private async listForNewConnection(server: string, owner: string): Promise<void> {
    if (owner === SHARED_CONNECTION_OWNER || !this.upstreams.awaitingCallerListing(server).includes(server)) return;
    // Only the owner key matters for routing an OAuth server (secretOwner = userId ?? id); no policy is involved.
    const principal: Principal = { userId: null, id: owner, displayName: owner, email: null, roles: [], groups: [], scopes: [], method: 'bearer', keyId: null };
    await listThroughCaller(this.routing, principal, [server]);
  }

  /** Adds a hook at run time (tests, or modules that build hooks dynamically); returns its removal. */
  addHook(hook: McpOperationHook): () => void {
    this.setHooks([...this.hooks, hook]);
    return () => this.setHooks(this.hooks.filter((h) => h !== hook));
  }

  /** Replaces the hook list (never mutated in place: a running call keeps the list it started with). */
  private setHooks(hooks: McpOperationHook[]): void {
    this.hooks = hooks;
    this.afterHooks = hooks.some((h) => typeof h.afterCall === 'function');
  }

  /**
   * Runs one operation through every step and resolves to its result (the MCP result object
   * of `request.kind`), or rejects with a `ProtocolError` carrying the JSON-RPC error the client
   * gets (unknown name `-32602`, denied `-32003`, upstream protocol errors with their code).
   */
  run<K extends McpOperationKind>(request: McpOperationRequest<K>): Promise<Record<string, unknown>> {
    // A tool not listed yet while its server is still starting: wait briefly, then say so.
    const starting = waitForStarting(this.upstreams, request);
    return starting ? starting.then((servers) => this.runNow(request, servers)) : this.runNow(request, []);
  }

  private runNow<K extends McpOperationKind>(request: McpOperationRequest<K>, starting: string[]): Promise<Record<string, unknown>> {
    // A per-user server its blank connection cannot list is listed through the caller's (rare: one cheap check).
    if (LISTS.has(request.kind)) {
      const servers = this.upstreams.awaitingCallerListing(request.scope);
      if (servers.length > 0) return this.listUnlisted(request, servers).then(() => this.runListed(request, starting));
    }
    return this.runListed(request, starting);
  }

  /**
   * Before a list: per-user servers (`servers`) this replica has no catalog of take the last
   * listing any replica stored; those still without one are listed through the caller's own
   * connection. What remains unlisted shows Gatehouse's connect tool (see `connectTool`).
   */
  private async listUnlisted(request: McpOperationRequest, servers: string[]): Promise<void> {
    await this.upstreams.loadStoredListings(servers);
    const still = this.upstreams.awaitingCallerListing(request.scope);
    if (still.length > 0) await listThroughCaller(this.routing, request.principal, still);
  }

  /**
   * `<server>__connect` (`connect` on `/mcp/<server>`) for a server with `oauth` whose catalog
   * has no such tool (any more): Gatehouse's connect tool, still callable by a client that listed
   * it before the server's tools were known. Undefined for any other name.
   */
  private connectToolTarget(scope: string, name: string): Target | undefined {
    const server = scope !== '' ? (name === CONNECT_TOOL_NAME ? scope : '') : name.endsWith(`${NAME_SEPARATOR}${CONNECT_TOOL_NAME}`) ? name.slice(0, -(NAME_SEPARATOR.length + CONNECT_TOOL_NAME.length)) : '';
    return server && this.upstreams.template(server)?.oauth != null ? { server, name: CONNECT_TOOL_NAME, connectTool: true } : undefined;
  }

  private runListed<K extends McpOperationKind>(request: McpOperationRequest<K>, starting: string[]): Promise<Record<string, unknown>> {
    let authorized: AuthorizedOperation<K>;
    try {
      authorized = authorize(this.policies, this.classify(request));
    } catch (unknown) {
      const error = starting.length > 0 && unknown instanceof ProtocolError && Number(unknown.code) === Number(ProtocolErrorCode.InvalidParams) ? startingError(starting) : unknown;
      if (this.hooks.length > 0) this.refused(request, error);
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    if (this.hooks.length > 0) return this.hooked(authorized);
    try {
      return this.execute(authorized);
    } catch (error) {
      // A list's invalid cursor is refused synchronously.
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /**
   * A tool of a per-user server nobody has listed yet on this replica (its shared connection is
   * refused for want of a user's token or secret, and no caller's connection has listed it, see
   * CallerListing): its name cannot be checked, so the call is routed by its server prefix and
   * the route decides — a caller who has not connected is asked to (the connect flow), one who
   * has reaches the upstream, which knows its tools. Undefined for any other unknown name.
   */
  private unlistedTool(scope: string, name: string): Target | undefined {
    const waiting = this.upstreams.awaitingCallerListing(scope);
    if (waiting.length === 0) return undefined;
    if (scope !== '') return waiting.includes(scope) ? { server: scope, name } : undefined;
    const at = name.indexOf(NAME_SEPARATOR);
    const server = at > 0 ? name.slice(0, at) : '';
    return waiting.includes(server) && at + NAME_SEPARATOR.length < name.length ? { server, name: name.slice(at + NAME_SEPARATOR.length) } : undefined;
  }

  /** Step 1: what is asked, on what. Throws -32600 for a vanished scope, -32602 for an unknown name. */
  classify<K extends McpOperationKind>(request: McpOperationRequest<K>): ClassifiedOperation<K> {
    const op = request as ClassifiedOperation<K>;
    const catalog = this.upstreams.catalog(request.scope);
    if (!catalog) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, `MCP server "${request.scope}" does not exist or is disabled`);
    op.catalog = catalog;
    switch (request.kind) {
      case 'tools/call': {
        const { name } = request.params as McpOperationRequest<'tools/call'>['params'];
        const target = catalog.resolveTool(name) ?? this.connectToolTarget(request.scope, name) ?? this.unlistedTool(request.scope, name);
        if (!target) {
          const hint = request.scope === '' ? ' Names on this endpoint are <server>__<tool>; see tools/list.' : '';
          throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown tool "${echoed(name)}".${hint}`);
        }
        op.target = target;
        op.policy = toolPolicy(target);
        break;
      }
      case 'prompts/get': {
        const { name } = request.params as McpOperationRequest<'prompts/get'>['params'];
        const target = catalog.resolvePrompt(name);
        if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown prompt "${echoed(name)}"`);
        op.target = target;
        op.policy = { operation: 'prompts/get', name: ns(target) };
        break;
      }
      case 'resources/read':
      case 'resources/subscribe': {
        // Subscribing to a resource needs the same permission as reading it.
        const { uri } = request.params as McpOperationRequest<'resources/read'>['params'];
        const target = catalog.resolveResource(uri);
        if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Unknown resource "${echoed(uri)}"`);
        op.target = target;
        op.policy = { operation: 'resources/read', name: ns(target) };
        break;
      }
      case 'completion/complete': {
        // Completing an argument reveals what the prompt or resource template would accept:
        // it needs the permission to use that prompt (prompts/get) or template (resources/read).
        const { ref } = request.params as McpOperationRequest<'completion/complete'>['params'];
        const target = ref.type === 'ref/prompt' ? catalog.resolvePrompt(ref.name) : catalog.resolveResource(ref.uri);
        if (!target) throw new ProtocolError(ProtocolErrorCode.InvalidParams, 'Unknown completion reference');
        op.target = target;
        op.policy = { operation: ref.type === 'ref/prompt' ? 'prompts/get' : 'resources/read', name: ns(target) };
        break;
      }
      default:
        break;
    }
    return op;
  }

  private refused(request: McpOperationRequest, error: unknown): void {
    const rpc = toRpcError(error);
    for (const hook of this.hooks) {
      try {
        hook.onRefused?.(request, rpc);
      } catch (e) {
        this.logger.warn({ err: e }, 'an MCP operation hook failed in onRefused');
      }
    }
  }

  /**
   * Steps 3–7 with hooks. Without any `afterCall` hook (the steady state: the tool rate limit
   * has only `beforeCall`), {@link guarded}: the same order and errors without the outcome and
   * timing bookkeeping nobody reads; else {@link timed}.
   */
  private hooked<K extends McpOperationKind>(op: AuthorizedOperation<K>): Promise<Record<string, unknown>> {
    return this.afterHooks ? this.timed(op) : this.guarded(op, this.hooks, 0);
  }

  /**
   * `beforeCall` of `hooks[from…]` in order — a returned promise awaited, the rest continued
   * after it — then {@link execute}. A hook or `execute` that throws rejects with what it threw
   * (as the async {@link timed} does), and nothing after it runs.
   */
  private guarded(op: AuthorizedOperation, hooks: McpOperationHook[], from: number): Promise<Record<string, unknown>> {
    try {
      for (let i = from; i < hooks.length; i++) {
        const pending = hooks[i].beforeCall?.(op);
        if (pending) return pending.then(() => this.guarded(op, hooks, i + 1));
      }
      return this.execute(op);
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return Promise.reject(error);
    }
  }

  /** Steps 3–7 with `afterCall` hooks: each sees the outcome and the duration. */
  private async timed<K extends McpOperationKind>(op: AuthorizedOperation<K>): Promise<Record<string, unknown>> {
    const hooks = this.hooks;
    const started = performance.now();
    let outcome: McpOutcome | undefined;
    try {
      for (const hook of hooks) {
        const pending = hook.beforeCall?.(op);
        if (pending) await pending;
      }
      const result = await this.execute(op);
      outcome = { ok: true, result, toolError: (result as { isError?: unknown }).isError === true };
      return result;
    } catch (error) {
      outcome = { ok: false, error: toRpcError(error) };
      throw error;
    } finally {
      const ms = performance.now() - started;
      for (const hook of hooks) {
        try {
          hook.afterCall?.(op, outcome!, ms);
        } catch (e) {
          this.logger.warn({ err: e }, 'an MCP operation hook failed in afterCall');
        }
      }
    }
  }

  /** Steps 4–6 for an authorized operation. */
  private execute(authorized: AuthorizedOperation): Promise<Record<string, unknown>> {
    assertAuthorized(authorized);
    const op = authorized.operation;
    switch (op.kind) {
      case 'ping':
        return Promise.resolve({});
      case 'tools/list': {
        const view = this.policies.view(op.catalog, op.scope, policySubject(op.principal));
        const page = this.page(op, view.tools);
        if (!page.whole) return Promise.resolve(page.result('tools'));
        const result: Record<string, unknown> & Preserialized = { tools: view.tools };
        result[PRESERIALIZED] = preserializedTools(view.tools, view.toolsJson);
        return Promise.resolve(result);
      }
      case 'prompts/list':
        return Promise.resolve(this.page(op, this.policies.view(op.catalog, op.scope, policySubject(op.principal)).prompts).result('prompts'));
      case 'resources/list':
        return Promise.resolve(this.page(op, this.policies.view(op.catalog, op.scope, policySubject(op.principal)).resources).result('resources'));
      case 'resources/templates/list':
        return Promise.resolve(this.page(op, this.templatesFor(op)).result('resourceTemplates'));
      case 'tools/call':
        return this.callTool(authorized as AuthorizedOperation<'tools/call'>);
      case 'prompts/get': {
        const params = op.params as ClassifiedOperation<'prompts/get'>['params'];
        const server = op.target!.server;
        return this.forward(authorized, 'prompts/get', { ...params, name: op.target!.name }, (result) =>
          op.scope === '' ? withAggregatedUris('prompts/get', server, result as { messages: unknown[] }) : result,
        );
      }
      case 'resources/read': {
        const params = op.params as ClassifiedOperation<'resources/read'>['params'];
        const target = op.target!;
        return this.forward(authorized, 'resources/read', { ...params, uri: target.name }, (result) => {
          // Contents carry the upstream's URI; on /mcp every one becomes readable there.
          if (op.scope === '') return withAggregatedUris('resources/read', target.server, result as { contents: unknown[] });
          const contents = Array.isArray(result.contents) ? (result.contents as { uri?: unknown }[]) : [];
          return { ...result, contents: contents.map((c) => (c.uri === target.name ? { ...c, uri: params.uri } : c)) };
        });
      }
      case 'completion/complete': {
        const params = op.params as ClassifiedOperation<'completion/complete'>['params'];
        const ref = params.ref.type === 'ref/prompt' ? { ...params.ref, name: op.target!.name } : { ...params.ref, uri: op.target!.name };
        return this.forward(authorized, 'completion/complete', { ...params, ref }, (result) => result);
      }
      case 'resources/subscribe':
        return this.subscribeSession(authorized as AuthorizedOperation<'resources/subscribe'>);
      case 'resources/unsubscribe': {
        const { uri } = op.params as ClassifiedOperation<'resources/unsubscribe'>['params'];
        if (op.client?.sessionId) this.subscriptions.unsubscribeSession(op.client.sessionId, uri);
        return Promise.resolve({});
      }
      case 'logging/setLevel':
        return this.setLevel(op as ClassifiedOperation<'logging/setLevel'>);
    }
  }

  /** One page of a list (see {@link paginate}: -32602 for a cursor Gatehouse did not issue). */
  private page<T extends object>(op: ClassifiedOperation, items: readonly T[]): { whole: boolean; result(field: string): Record<string, unknown> } {
    const page = paginate(op.kind as PaginatedKind, items, (op.params as { cursor?: unknown }).cursor, this.pageSize);
    return { whole: page.whole, result: (field) => ({ [field]: page.items, ...(page.nextCursor === undefined ? {} : { nextCursor: page.nextCursor }) }) };
  }

  /** Resource templates the principal may read (policy `resources/read` on `<server>__<uriTemplate>`). */
  private templatesFor(op: ClassifiedOperation): Catalog['resourceTemplates'] {
    const { catalog } = op;
    if (catalog.resourceTemplates.length === 0) return catalog.resourceTemplates;
    const subject = policySubject(op.principal);
    // Cached per policy view: a view object is per (catalog, principal, policy-set version).
    const key = this.policies.view(catalog, op.scope, subject);
    let templates = this.templateViews.get(key);
    if (!templates) {
      templates = catalog.resourceTemplates.filter((t) => {
        const target = catalog.resolveResource(t.uriTemplate);
        return target !== undefined && this.policies.decide(subject, 'resources/read', ns(target)).allowed;
      });
      this.templateViews.set(key, templates);
    }
    return templates;
  }

  /**
   * `tools/call`: route, forward. An upstream that is down, crashed or too slow becomes an
   * `isError` result naming it (MCP spec, server/tools: errors in the tool execution are
   * reported in the result, so the model can see them); upstream protocol errors keep their
   * code and gain the server's name.
   *
   * The steady state — a plain shared route (no OAuth token the upstream could refuse, nothing
   * to release) to a connected upstream, outside MRTR — goes straight to {@link forwardTool},
   * without the async layers of the OAuth retry and the route's release (which could do
   * nothing there); everything else through {@link callRetrying}. Same outcomes either way.
   */
  private callTool(authorized: AuthorizedOperation<'tools/call'>): Promise<CallToolResult> {
    try {
      const op = authorized.operation;
      const target = op.target!;
      const client = op.client;
      // A 2026-07-28 retry carrying the answers to an input_required round (MRTR): the call is
      // already running upstream; hand it the answers instead of calling again.
      // A retry answering a connect ask (ConnectAsk) is a fresh call.
      if (op.era === 'modern' && client?.requestState !== undefined && !isConnectRequestState(client.requestState)) return this.inputs.resume(op.principal.id, ns(target), client, op.signal) as Promise<CallToolResult>;
      const declined = op.era === 'modern' ? declinedConnect(client) : undefined;
      if (declined) return Promise.resolve(declined);
      // Routed once: a pooled route holds a connection, so the slow path takes this one on.
      const routing = routeCall(this.routing, authorized, undefined);
      if (routing !== undefined && !(routing instanceof Promise) && isSharedRoute(routing) && !target.connectTool && !(op.era === 'modern' && client && answersRequests(client.capabilities))) {
        const connection = routing.connection;
        // Not a parked server: readyNow() then only reads the client (waking one must happen once, on the slow path).
        if (connection.state !== 'idle') {
          const ready = connection.readyNow();
          if (ready && !(ready instanceof Promise)) return this.forwardTool(op, routing, connection, op.params.arguments, this.callerOf(op), op.signal);
        }
      }
      return this.callRetrying(authorized, routing);
    } catch (error) {
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      return Promise.reject(error);
    }
  }

  /** {@link callTool} on `routing` (its first route), with {@link withOAuthRetry}'s first attempt inlined: no closures per call until a token is refused. */
  private async callRetrying(authorized: AuthorizedOperation<'tools/call'>, routing: ReturnType<typeof routeCall>): Promise<CallToolResult> {
    try {
      return await this.callRouted(authorized, undefined, routing);
    } catch (error) {
      if (!(error instanceof OAuthRefusal)) throw error;
      return this.retryRefused(authorized.operation, true, error, (token) => this.callRouted(authorized, token, routeCall(this.routing, authorized, token)), toolProblem);
    }
  }

  /** `tools/call` on `routing`, the route for the caller (with `token`: the refreshed OAuth token after a 401, which `routing` was made with). */
  private async callRouted(authorized: AuthorizedOperation<'tools/call'>, token: UsableToken | undefined, routing: ReturnType<typeof routeCall>): Promise<CallToolResult> {
    const op = authorized.operation;
    const target = op.target!;
    const params = op.params;
    const client = op.client;
    // A plain shared route is known without a promise.
    const route = routing instanceof Promise ? await routing : routing;
    if (route && 'problem' in route) return this.connectNeeded(op, true, route, (): CallToolResult => ({ isError: true, content: [{ type: 'text', text: route.problem }] }));
    const connection = route?.connection;
    let handedOver = false;
    try {
      // No promise to wait for unless a parked stdio server has to be woken.
      let ready = connection?.readyNow();
      if (ready instanceof Promise) ready = await ready;
      if (!connection || !ready) {
        const status = connection?.getStatus();
        refusedAtStart(route, status?.lastError, op.principal);
        return upstreamFailure(target.server, status?.lastError ?? `it is ${status?.state ?? 'not connected'}`);
      }
      // Gatehouse's connect tool: the caller has a working connection (else they were asked to connect above).
      if (target.connectTool) return connectedResult(target.server, op.scope);
      // Injected arguments overwrite whatever the client sent under those names.
      const args = route.inject !== NO_INJECT && Object.keys(route.inject).length > 0 ? { ...params.arguments, ...route.inject } : params.arguments;
      if (op.era === 'modern' && client && answersRequests(client.capabilities)) {
        // The call may outlive this request (input_required rounds): the route is released when it ends.
        handedOver = true;
        return (await this.inputs.start(op.principal.id, ns(target), client, op.signal, (caller, signal) =>
          this.forwardTool(op, route, connection, args, caller, signal).finally(() => route.release()),
        )) as CallToolResult;
      }
      return await this.forwardTool(op, route, connection, args, this.callerOf(op), op.signal);
    } finally {
      if (!handedOver) route?.release();
    }
  }

  /**
   * Sends a routed `tools/call` (`args`: the client's arguments with the route's injected ones)
   * through `connection` for `caller`, with `signal`, and maps the outcome: progress (with the
   * client's token) written before the result; an abort rethrown as is; a 401/403 as the
   * {@link OAuthRefusal} {@link withOAuthRetry} handles; a timeout or failure as an `isError`
   * result naming the server; an upstream protocol error with its code, naming the server.
   */
  private async forwardTool(
    op: ClassifiedOperation<'tools/call'>,
    route: Extract<Route, { connection: unknown }>,
    connection: UpstreamConnection,
    args: Record<string, unknown> | undefined,
    caller: UpstreamCaller | undefined,
    signal: AbortSignal | undefined,
  ): Promise<CallToolResult> {
    const target = op.target!;
    const progressToken = op.params._meta?.progressToken;
    // Progress is written before the result: the response must not overtake the last one.
    let written: Promise<void>[] | undefined;
    let onProgress: ((progress: Record<string, unknown>) => void) | undefined;
    if (progressToken !== undefined && op.notify) {
      const notify = op.notify;
      const pending: Promise<void>[] = (written = []);
      onProgress = (progress) => {
        const sent = notify(progress);
        if (sent) pending.push(sent.catch(() => undefined));
      };
    }
    try {
      const result = await connection.callTool(
        progressToken === undefined ? { name: target.name, arguments: args } : { name: target.name, arguments: args, _meta: { progressToken } },
        { signal, onProgress, caller },
      );
      if (written !== undefined && written.length > 0) await Promise.all(written);
      return op.scope === '' ? withAggregatedUris('tools/call', target.server, result) : result;
    } catch (error) {
      if (signal?.aborted) throw error;
      // A 401/403 refused the request before it ran: refresh and retry, or ask (withOAuthRetry).
      const refused = route.oauth ? authErrorIn(error) : undefined;
      if (refused) throw new OAuthRefusal(refused, route.oauth!, op.principal);
      if (isTimeout(error)) return upstreamFailure(target.server, `no answer within ${connection.server.timeoutMs} ms`);
      if (error instanceof ProtocolError) throw new ProtocolError(error.code, `Upstream MCP server "${target.server}": ${error.message}`, error.data);
      return upstreamFailure(target.server, errorText(error));
    }
  }

  /**
   * The upstream caller of a call made without MRTR: a 2025-era client's requests go through
   * {@link ClientRequests}; a 2026-07-28 client that cannot answer any gets its log messages
   * only (its requests are refused by the capability check first).
   */
  private callerOf(op: ClassifiedOperation): UpstreamCaller | undefined {
    const client = op.client;
    if (client === undefined) return undefined;
    if (op.era === 'legacy') return this.clientRequests.callerFor(client);
    return { capabilities: client.capabilities, request: refuseRequest, notify: client.notify };
  }

  /**
   * `prompts/get`, `resources/read`, `completion/complete`: routes `op` to its upstream and
   * sends `params` (the upstream's own name/URI) with the server's timeout; `map` turns the
   * result into the client's. Requests and log messages the upstream sends meanwhile reach the
   * calling client exactly as for `tools/call`: a 2025-era client on the call's stream or its
   * session's GET stream, a 2026-07-28 client as `input_required` rounds (MRTR; MCP 2026-07-28
   * basic/patterns/mrtr allows them on `prompts/get` and `resources/read`, not on
   * `completion/complete`, whose upstream requests such a client therefore refuses). Upstream
   * failures become protocol errors naming the server.
   */
  private async forward(
    authorized: AuthorizedOperation,
    method: 'prompts/get' | 'resources/read' | 'completion/complete',
    params: Record<string, unknown> & { _meta?: Record<string, unknown> },
    map: (result: Record<string, unknown>) => Record<string, unknown>,
  ): Promise<Record<string, unknown>> {
    const op = authorized.operation;
    const target = op.target!;
    const client = op.client;
    const mrtr = op.era === 'modern' && method !== 'completion/complete';
    const key = `${method} ${ns(target)}`;
    if (mrtr && client?.requestState !== undefined) return this.inputs.resume(op.principal.id, key, client, op.signal);
    return this.withOAuthRetry(
      authorized.operation,
      false,
      (token) => this.forwardRouted(authorized, method, params, map, { mrtr, key }, token),
      (problem) => {
        throw new ProtocolError(ProtocolErrorCode.InvalidRequest, problem.problem);
      },
    );
  }

  /**
   * {@link forward} on the route for the caller (with `token`: the refreshed OAuth token after a
   * 401); `round` is what `forward` decided: whether MRTR applies and the broker's key.
   */
  private async forwardRouted(
    authorized: AuthorizedOperation,
    method: 'prompts/get' | 'resources/read' | 'completion/complete',
    params: Record<string, unknown> & { _meta?: Record<string, unknown> },
    map: (result: Record<string, unknown>) => Record<string, unknown>,
    { mrtr, key }: { mrtr: boolean; key: string },
    token: UsableToken | undefined,
  ): Promise<Record<string, unknown>> {
    const op = authorized.operation;
    const target = op.target!;
    const client = op.client;
    const route = await routeCall(this.routing, authorized, token);
    if (route && 'problem' in route) {
      return this.connectNeeded(op, false, route, () => {
        throw new ProtocolError(ProtocolErrorCode.InvalidRequest, route.problem);
      });
    }
    const connection = route?.connection;
    let handedOver = false;
    try {
      if (!connection || !(await connection.ready())) {
        const status = connection?.getStatus();
        refusedAtStart(route, status?.lastError, op.principal);
        throw new ProtocolError(
          ProtocolErrorCode.InternalError,
          `Upstream MCP server "${target.server}" is unavailable${status?.lastError ? `: ${status.lastError}` : ` (${status?.state ?? 'unknown'})`}`,
        );
      }
      const progressToken = params._meta?.progressToken;
      const onProgress = progressToken === undefined || !op.notify ? undefined : (progress: Record<string, unknown>) => void op.notify!(progress);
      const send = (caller: UpstreamCaller | undefined, signal: AbortSignal | undefined) =>
        connection.request(method, params, { signal, caller, onProgress }).then(map, (error: unknown) => {
          if (signal?.aborted) throw error;
          // A 401/403 refused the request before it ran: refresh and retry, or ask (withOAuthRetry).
          const refused = route.oauth ? authErrorIn(error) : undefined;
          if (refused) throw new OAuthRefusal(refused, route.oauth!, op.principal);
          return named(target, error);
        });
      if (mrtr && client && answersRequests(client.capabilities)) {
        // The request may outlive this leg (input_required rounds): the route is released when it ends.
        handedOver = true;
        return await this.inputs.start(op.principal.id, key, client, op.signal, (caller, signal) => send(caller, signal).finally(() => route.release()));
      }
      // A 2026-07-28 client during completion/complete: no input_required there, so its upstream requests are refused, saying why.
      const caller = op.era === 'modern' && client ? { ...this.callerOf(op)!, request: refuseOutsideMrtr(method) } : this.callerOf(op);
      return await send(caller, op.signal);
    } finally {
      if (!handedOver) route?.release();
    }
  }

  /**
   * 2025-era `resources/subscribe`: the calling session watches the resource until it
   * unsubscribes or ends ({@link SessionSubscriptions}). Needs a session; a 2026-07-28 client
   * names its resources in `subscriptions/listen` instead.
   */
  private async subscribeSession(authorized: AuthorizedOperation<'resources/subscribe'>): Promise<Record<string, unknown>> {
    const op = authorized.operation;
    const sessionId = op.client?.sessionId;
    if (!sessionId) {
      throw new ProtocolError(ProtocolErrorCode.InvalidRequest, 'resources/subscribe needs a 2025-era session; 2026-07-28 clients name resources in subscriptions/listen (resourceSubscriptions)');
    }
    await this.subscriptions.subscribe(sessionId, op.params.uri, (deliver) => this.watchAuthorized(authorized, op.params.uri, deliver));
    return {};
  }

  /**
   * Watches the resource `request.params.uri` for `request.principal` (used by modern
   * `subscriptions/listen`): classified and authorized like `resources/read` (unknown: -32602,
   * denied: -32003), then {@link watchAuthorized}. Resolves with the watch's release. No hooks
   * run (no audit event): the listen request is the operation.
   */
  watch(request: McpOperationRequest<'resources/subscribe'>, deliver: (params: Record<string, unknown>) => void): Promise<() => void> {
    let authorized: AuthorizedOperation<'resources/subscribe'>;
    try {
      authorized = authorize(this.policies, this.classify(request));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    return this.watchAuthorized(authorized, request.params.uri, deliver);
  }

  /**
   * Watches an authorized operation's target resource through the connection its caller uses
   * (`UpstreamConnection.watchResource`: one upstream subscription per connection and URI).
   * Each update reaches `deliver` with `clientUri` (the URI as the client named it) in place of
   * the upstream's. Rejects with -32601 naming the server when the upstream does not support
   * subscriptions, and with the upstream's error (naming the server) when it refuses. The
   * release ends the watch and the route's hold on a per-user connection.
   */
  private async watchAuthorized(authorized: AuthorizedOperation, clientUri: string, deliver: (params: Record<string, unknown>) => void): Promise<() => void> {
    const target = authorized.operation.target!;
    const route = await routeCall(this.routing, authorized);
    if (route && 'problem' in route) throw new ProtocolError(ProtocolErrorCode.InvalidRequest, route.problem);
    if (!route) throw new ProtocolError(ProtocolErrorCode.InternalError, `Upstream MCP server "${target.server}" is unavailable`);
    try {
      if (route.connection.state === 'connected' && !route.connection.supportsSubscribe) {
        throw new ProtocolError(ProtocolErrorCode.MethodNotFound, `Upstream MCP server "${target.server}" does not support resource subscriptions (it does not declare resources.subscribe)`);
      }
      const unwatch = await route.connection.watchResource(target.name, (params) => deliver({ ...params, uri: clientUri })).catch((error: unknown) => named(target, error));
      return () => {
        unwatch();
        route.release();
      };
    } catch (error) {
      route.release();
      throw error;
    }
  }

  /**
   * Runs `attempt` (a call routed with the caller's OAuth token) and handles the upstream
   * refusing that token: a 401 (RFC 6750 `invalid_token`; the request did not run) refreshes
   * the token once and runs the call again with the new one — a second 401 marks the connection
   * `needs_reauth`; a 403 `insufficient_scope` asks for the union of held and required scopes
   * (MCP 2025-11-25 authorization, "Scope Challenge Handling"), never twice for the same set.
   * What cannot be retried becomes `problem` through `ask` (the caller is asked to connect).
   */
  private async withOAuthRetry<T>(op: ClassifiedOperation, toolResult: boolean, attempt: (token: UsableToken | undefined) => Promise<T>, ask: (problem: { problem: string; connect?: ConnectRequest }) => T): Promise<T> {
    try {
      return await attempt(undefined);
    } catch (error) {
      if (!(error instanceof OAuthRefusal)) throw error;
      return this.retryRefused(op, toolResult, error, attempt, ask);
    }
  }

  /** {@link withOAuthRetry} after its first attempt was refused with `error`. */
  private async retryRefused<T>(
    op: ClassifiedOperation,
    toolResult: boolean,
    error: OAuthRefusal,
    attempt: (token: UsableToken | undefined) => Promise<T>,
    ask: (problem: { problem: string; connect?: ConnectRequest }) => T,
  ): Promise<T> {
    const server = op.target!.server;
    const next = await this.afterRefusal(server, error, false);
    if (!('token' in next)) return this.connectNeeded(op, toolResult, next, () => ask(next));
    try {
      return await attempt(next);
    } catch (again) {
      if (!(again instanceof OAuthRefusal)) throw again;
      const last = await this.afterRefusal(server, again, true);
      const problem = 'token' in last ? { problem: `Upstream MCP server "${server}" refused the refreshed token` } : last;
      return this.connectNeeded(op, toolResult, problem, () => ask(problem));
    }
  }

  /** What to do after the upstream refused a token: a token to retry with, or the problem to report. */
  private async afterRefusal(server: string, refusal: OAuthRefusal, final: boolean): Promise<UsableToken | { problem: string; connect?: ConnectRequest }> {
    const { error, token } = refusal;
    if (error.status === 403) {
      if (error.challenge.error === 'insufficient_scope') {
        const result = await this.connections.stepUp(server, token, error.challenge.scopes ?? []);
        return 'failure' in result ? { problem: result.failure } : 'connect' in result ? result : { problem: `Upstream MCP server "${server}" refused the call (HTTP 403)` };
      }
      return { problem: `Upstream MCP server "${server}" refused the call (${error.message}); your account may lack access there` };
    }
    if (final) {
      await this.connections.markNeedsReauth(server, token.owner, 'the upstream refused the access token again after a refresh');
      return { problem: `Your connection to server "${server}" must be renewed (the upstream refuses its token): ${this.connections.howToConnect(server)}`, connect: { server, reason: 'needs_reauth' } };
    }
    const result = await this.connections.rejected(server, token, refusal.principal);
    return 'failure' in result ? { problem: result.failure } : result;
  }

  /**
   * The one place a route problem is turned into what the client sees. `problem.connect` set:
   * the caller must connect (or reconnect, or grant more scopes) — {@link ConnectAsk} makes it
   * the era's ask (URL elicitation error, `input_required`, or a tool error with the link);
   * `toolResult` false (prompts, resources): only the -32042 error, else `otherwise()`.
   */
  private connectNeeded<T>(op: ClassifiedOperation, toolResult: boolean, problem: { problem: string; connect?: ConnectRequest }, otherwise: () => T): T {
    return this.connectAsk.answer(op, problem, otherwise, toolResult);
  }

  /**
   * `logging/setLevel`: applies to the calling session only — its level filters the log
   * messages Gatehouse delivers to it ({@link LogLevels}) — and every upstream of the scope that
   * supports logging is set to the most verbose level any session wants.
   */
  private async setLevel(op: ClassifiedOperation<'logging/setLevel'>): Promise<Record<string, unknown>> {
    const servers = op.scope === '' ? this.upstreams.connectedServers() : [op.scope];
    const asked = op.params.level as LogLevel;
    if (op.client?.sessionId) this.logLevels.set(op.client.sessionId, asked);
    const level = this.logLevels.mostVerbose(op.client?.sessionId ? undefined : asked);
    await Promise.all(
      servers.map(async (name) => {
        const client = this.upstreams.connection(name)?.getClient();
        if (client?.getServerCapabilities()?.logging) await client.setLoggingLevel(level).catch(() => undefined);
      }),
    );
    return {};
  }
}
