import {
  Client,
  SSEClientTransport,
  StreamableHTTPClientTransport,
  type CallToolResult,
  type Prompt,
  type Resource,
  type ResourceTemplateType,
  type Tool,
  type Transport,
} from '@modelcontextprotocol/client';
import { ProtocolError, SdkError, SdkErrorCode } from '@modelcontextprotocol/client';
import type { AppConfig } from '../config/config.schema.js';
import { ValueMasker, type MaskedValue } from '../common/logging/value-masker.js';
import { valueProblem } from '../secrets/value-rules.js';
import { systemClock, type Clock, type Timer } from './clock.js';
import { DescribedError, describeUpstreamError } from './error-description.js';
import { credentialsInArgs } from './server-view.js';
import { ConnectionStateMachine, type ConnectionState } from './connection-state.js';
import { HttpForwarder, type ForwardOptions, type HttpForwarderOptions } from './http-forwarder.js';
import { Cancellation } from './cancellation.js';
import type { ResponseLimits } from './sse-reader.js';
import { fetchWithinOrigins } from './redirects.js';
import { DEFAULT_RETRY, fetchRetryingRefusals } from './http-retry.js';
import { authErrorIn, fetchObservingAuth } from './auth-challenge.js';
import { isSessionLost } from './session-recovery.js';
import type { ProcessSpawner } from './process-spawner.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';
import { ProcessGroupStdioTransport } from './stdio-transport.js';
import type { ServerLog, ServerLogSource } from './server-log.js';
import { recordLogNotifications } from './server-log-tap.js';
import { deliverNotificationsFirst } from './ordered-delivery.js';
import { UPSTREAM_CLIENT_CAPABILITIES, UpstreamCallers, serveClientRequests, type UpstreamCaller } from './upstream-callers.js';
import { DEFAULT_UPSTREAM_LIST_LIMITS, walkPages, type UpstreamListLimits } from './list-walker.js';
import { LIST_METHODS, OFFERING_KINDS, type OfferingKind } from './offering-kinds.js';

/** Time allowed for a server to start, answer `initialize` and list what it offers. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/**
 * `idle`: a stdio server parked after GATEHOUSE_STDIO_IDLE_TTL without calls; the next call
 * restarts it. `closed`: retired for good (see {@link ConnectionState}).
 */
export type UpstreamState = ConnectionState;

export interface UpstreamStatus {
  /**
   * The connection's state; `needs_user_credentials`: a server configured per user whose
   * shared (blank-valued) connection the upstream refuses (401/403) — it is listed and called
   * through callers' own connections (see CallerListing).
   */
  state: UpstreamState | 'needs_user_credentials';
  lastError: string | null;
  /** The last thing the connection recovered from by itself (a forgotten session renewed), with when; null if none. */
  lastRecovery: string | null;
  toolCount: number;
  updatedAt: string;
  /** The transport the connection uses: the configured one, or `sse` after an automatic fallback (see `fallback`). */
  transport?: 'stdio' | 'streamable_http' | 'sse';
  /**
   * Present when a server registered as `streamable_http` was connected over the old HTTP+SSE
   * transport instead (its POST was refused with a 4xx): why, e.g. `streamable HTTP refused
   * (HTTP 405 Method Not Allowed …); connected over the HTTP+SSE transport`.
   */
  fallback?: string;
}

export interface ConnectionEvents {
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  /**
   * The upstream's tools, prompts or resources changed (after connect, or on its list-changed
   * notification): `kinds` says which (absent: any of them).
   */
  onToolsChanged(name: string, kinds?: readonly OfferingKind[]): void;
  /** Bounds on each upstream list walked over all its pages (default {@link DEFAULT_UPSTREAM_LIST_LIMITS}). */
  listLimits?: UpstreamListLimits;
  /** Stop a stdio server's process after this long without calls (0: keep it running). */
  idleTtlMs?: number;
  /** Time and timers (backoff, idle parking); default the system clock. */
  clock?: Clock;
  /** Starts stdio processes; default `node:child_process.spawn`. */
  spawner?: ProcessSpawner;
  /**
   * Values in this connection's env/headers that came from secrets: masked in everything it
   * reports at any length (configured literals only from 8 characters).
   */
  secretValues?: readonly string[];
  /** Longest message a stdio upstream may write, in bytes (GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE). */
  maxMessageBytes?: number;
  /** The server's ring of recent log lines (stderr, notifications/message, events), written masked. */
  serverLog?: ServerLog;
  /** Size caps, retries and redirect origins for HTTP upstreams (see {@link HttpForwarder}). */
  http?: HttpForwarderOptions;
  /**
   * A call whose upstream reports progress has its timeout restarted by each progress
   * notification, up to this many ms in all (GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT; MCP spec,
   * basic/utilities/progress and the SDK's `resetTimeoutOnProgress` / `maxTotalTimeout`).
   * Undefined: the server's own timeout is the whole budget.
   */
  maxTotalTimeoutMs?: number;
}

/**
 * A call that was in flight when its connection was closed or replaced (configuration or
 * secret change, idle parking, eviction, shutdown): it fails at once, saying why, instead of
 * waiting out its timeout. Whether the upstream acted on it is unknown.
 */
export class UpstreamConnectionClosedError extends DescribedError {
  constructor(
    readonly server: string,
    readonly reason: string,
  ) {
    super(`the connection to it was closed before it answered (${reason})`);
  }
}

/** Called with the params of each `notifications/resources/updated` for a watched URI. */
export type ResourceListener = (params: { uri: string } & Record<string, unknown>) => void;

/** One upstream URI watched through a connection: its watchers and the subscribe request's outcome. */
interface WatchedResource {
  listeners: Set<ResourceListener>;
  subscribed: Promise<void>;
}

/** One call being served through a connection; `fail` ends it at once. */
interface InflightCall {
  fail(error: Error): void;
}

/** What a {@link TrackedCall} asks of its connection: note the call's end, sanitize what it failed with. */
interface CallHost {
  ended(call: InflightCall): void;
  sanitized(error: unknown): unknown;
}

/** Listener options of the caller's signal (one object, not one per call). */
const ONCE = { once: true } as const;

/**
 * One call in flight through a connection (see `UpstreamConnection.track`): its
 * {@link Cancellation}, the listener on the caller's `outer` signal (`handleEvent`: aborts
 * the cancellation with the signal's reason), the end that runs once, and the promise the
 * caller gets — one object per call instead of a closure for each (the hot path).
 *
 * `promise` settles with what the call's work settles with ({@link follow}), or rejects at
 * once with what {@link fail} is given (the connection closed): whichever comes first; then the
 * call is over — off the connection's books, the signal's listener removed, `caller` no
 * longer registered, `release` run.
 */
class TrackedCall<T> implements InflightCall {
  readonly cancellation = new Cancellation();
  readonly promise: Promise<T>;
  private over = false;
  private resolve!: (value: T) => void;
  private reject!: (error: unknown) => void;

  constructor(
    private readonly host: CallHost,
    private readonly outer: AbortSignal | undefined,
    private readonly callers: UpstreamCallers,
    private readonly caller: UpstreamCaller | undefined,
    private readonly release: (() => void) | undefined,
  ) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    if (outer?.aborted) this.handleEvent();
    else outer?.addEventListener('abort', this, ONCE);
  }

  /** The caller's signal aborted. */
  handleEvent(): void {
    this.cancellation.abort(this.outer!.reason);
  }

  /** Settles the call as `running` settles (unless it is over already). */
  follow(running: Promise<T>): void {
    running.then(
      (value) => {
        if (this.end()) this.resolve(value);
      },
      (error: unknown) => this.failed(error),
    );
  }

  fail(error: Error): void {
    this.cancellation.abort(error);
    this.failed(error);
  }

  /** Ends the call with `error`, sanitized (an abort's reason may be any value, as before). */
  failed(error: unknown): void {
    if (this.end()) this.reject(this.host.sanitized(error));
  }

  private end(): boolean {
    if (this.over) return false;
    this.over = true;
    this.outer?.removeEventListener('abort', this);
    this.host.ended(this);
    if (this.caller) this.callers.remove(this.caller);
    this.release?.();
    return true;
  }
}

const GATEHOUSE_CLIENT = { name: 'gatehouse', version: '0.1.0' };
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

/** Most secret values injected into calls that a connection keeps masking (see {@link UpstreamConnection.maskAlso}). */
const MAX_NOTED_VALUES = 1_000;

/**
 * One replica's live connection to one upstream MCP server, through the official SDK client
 * (which negotiates the newest protocol era the server speaks). Keeps the server's tool list,
 * reports its status, and reconnects with exponential backoff after a failure.
 */
export class UpstreamConnection {
  private current: UpstreamServerEntity;
  private readonly machine: ConnectionStateMachine;
  private readonly clock: Clock;
  private readonly inflight = new Set<InflightCall>();
  /** The clients the calls in flight are made for: where upstream requests and log messages go. */
  private readonly callers = new UpstreamCallers();
  private closeReason: string | undefined;
  private closing: Promise<void> | undefined;
  private client: Client | undefined;
  private transport: Transport | undefined;
  private forwarder: HttpForwarder | undefined;
  private tools: Tool[] = [];
  /** `tools` by name, built on first use (a call passes its tool's definition to the SDK client). */
  private toolIndex: { of: Tool[]; byName: Map<string, Tool> } | undefined;
  private prompts: Prompt[] = [];
  private resources: Resource[] = [];
  private resourceTemplates: ResourceTemplateType[] = [];
  /** The upstream's `instructions` (initialize result), as connected. */
  private instructions: string | undefined;
  private status: Omit<UpstreamStatus, 'state'>;
  private retryTimer: Timer | undefined;
  private attempt = 0;
  private generation = 0;
  private lastUsed: number;
  private failedGeneration = -1;
  private idleTimer: Timer | undefined;
  private waking: Promise<void> | undefined;
  private masker!: ValueMasker;
  private readonly noted = new Set<string>();
  /** Why the current generation's transport ended on its own (stdio exit, stdout closed): what its calls in flight fail with. */
  private endedBecause: Error | undefined;
  private attempted = false;
  private markAttempted: () => void = () => undefined;
  private readonly firstAttempt = new Promise<void>((resolve) => (this.markAttempted = resolve));
  private renewing: Promise<void> | undefined;
  /** List refreshes running (per kind), and kinds whose list changed again meanwhile. */
  private readonly refreshing = new Set<OfferingKind>();
  private readonly refreshAgain = new Set<OfferingKind>();
  /**
   * Resources watched through this connection (`resources/subscribe` sent upstream once per
   * URI): the listeners per upstream URI, and the subscribe request's outcome.
   */
  private readonly watched = new Map<string, WatchedResource>();
  /** Whether the upstream declared `resources.subscribe` when it last connected. */
  private subscribable = false;
  /** Set when a `streamable_http` server was connected over HTTP+SSE instead: why (see {@link handshake}). */
  private fallback: string | undefined;

  constructor(
    server: UpstreamServerEntity,
    private readonly events: ConnectionEvents,
  ) {
    this.current = server;
    this.clock = events.clock ?? systemClock;
    this.lastUsed = this.clock.now();
    this.machine = new ConnectionStateMachine(server.enabled ? 'connecting' : 'disabled', (_, to) => {
      this.touchStatus();
      if (to !== 'connecting') this.attemptDone();
    });
    if (!server.enabled) this.attemptDone();
    this.status = { lastError: null, lastRecovery: null, toolCount: 0, updatedAt: new Date(this.clock.now()).toISOString() };
    this.buildMasker();
  }

  /** The server as this connection serves it. Replaced by {@link update} for changes that need no reconnect. */
  get server(): UpstreamServerEntity {
    return this.current;
  }

  /** Where the connection is in its lifecycle (see {@link ConnectionState}). */
  get state(): ConnectionState {
    return this.machine.state;
  }

  /** Calls being served right now (`callTool`). */
  get inflightCount(): number {
    return this.inflight.size;
  }

  /** True until the first connection attempt has ended (connected, failed, closed): the server is starting. */
  get starting(): boolean {
    return !this.attempted;
  }

  /** Resolves once the first connection attempt has ended, whatever its outcome. */
  whenAttempted(): Promise<void> {
    return this.firstAttempt;
  }

  private attemptDone(): void {
    this.attempted = true;
    this.markAttempted();
  }

  getStatus(): UpstreamStatus {
    const transport = this.fallback ? 'sse' : this.current.transport;
    return { state: this.machine.state, ...this.status, transport, ...(this.fallback ? { fallback: this.fallback } : {}) };
  }

  /**
   * Takes a new version of the server whose connection-relevant fields (see
   * {@link connectionKey}) are unchanged — a description, timeout, tool filter or inject
   * edit — without restarting anything. Throws if they differ: that needs a new connection.
   */
  update(server: UpstreamServerEntity): void {
    if (connectionKey(server) !== connectionKey(this.current)) throw new Error(`server "${server.name}": a connection-relevant change needs a new connection`);
    this.current = server;
    this.buildMasker();
  }

  /**
   * Secret values a call sends through this connection as arguments (`inject`): masked from
   * now on in what this connection reports (stderr, errors), at any length. Bounded (the
   * oldest are forgotten past 1,000).
   */
  maskAlso(values: readonly string[]): void {
    const fresh = values.filter((v) => !this.noted.has(v));
    if (fresh.length === 0) return;
    if (this.noted.size + fresh.length > MAX_NOTED_VALUES) {
      this.noted.clear();
      this.buildMasker();
    }
    for (const v of fresh) this.noted.add(v);
    this.masker.add(fresh.map((value) => ({ value, secret: true })));
  }

  /**
   * Text this connection reports (stderr lines, errors, `status.lastError`) with every value
   * Gatehouse handed the upstream replaced, in every encoding (see {@link ValueMasker}).
   */
  mask(text: string): string {
    return this.masker.mask(text);
  }

  /** The upstream's own tools, unfiltered and with its own names. */
  listTools(): Tool[] {
    return this.tools;
  }

  private toolDefinition(name: string): Tool | undefined {
    if (this.toolIndex?.of !== this.tools) this.toolIndex = { of: this.tools, byName: new Map(this.tools.map((t) => [t.name, t])) };
    return this.toolIndex.byName.get(name);
  }

  /** Everything the upstream offers, as last listed, and its `instructions`. */
  offerings(): { tools: Tool[]; prompts: Prompt[]; resources: Resource[]; resourceTemplates: ResourceTemplateType[]; instructions?: string } {
    return { tools: this.tools, prompts: this.prompts, resources: this.resources, resourceTemplates: this.resourceTemplates, instructions: this.instructions };
  }

  getClient(): Client | undefined {
    return this.machine.state === 'connected' ? this.client : undefined;
  }

  /** Whether the upstream declared `resources.subscribe` (MCP spec, server/resources "Capabilities") when it last connected. */
  get supportsSubscribe(): boolean {
    return this.subscribable;
  }

  /** Upstream URIs with at least one watcher (`resources/subscribe` sent once for each). */
  get watchedUris(): string[] {
    return [...this.watched.keys()];
  }

  /**
   * Watches the upstream resource `uri` (the upstream's own URI): the first watcher of a URI
   * sends `resources/subscribe` upstream, later ones share it (reference counted); each
   * `notifications/resources/updated` for `uri` calls every watcher with its params. Resolves
   * with the watcher's release — the last release sends `resources/unsubscribe`. After a
   * reconnect every watched URI is subscribed again. Rejects (the subscribe request's error,
   * sanitized) when the upstream refuses or cannot be reached; nothing is then held.
   * A stdio server with watched resources is never parked as idle (it would forget them).
   */
  async watchResource(uri: string, listener: ResourceListener): Promise<() => void> {
    let entry = this.watched.get(uri);
    if (!entry) {
      const created: WatchedResource = {
        listeners: new Set(),
        subscribed: this.withClient(undefined, (client, signal) => client.subscribeResource({ uri }, { signal, timeout: this.server.timeoutMs })).then(() => undefined),
      };
      // A failed subscribe is not kept: the next watcher tries again.
      created.subscribed.catch(() => {
        if (this.watched.get(uri) === created) this.watched.delete(uri);
      });
      this.watched.set(uri, created);
      entry = created;
    }
    const held = entry;
    held.listeners.add(listener);
    try {
      await held.subscribed;
    } catch (error) {
      held.listeners.delete(listener);
      throw error;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      held.listeners.delete(listener);
      if (held.listeners.size > 0 || this.watched.get(uri) !== held) return;
      this.watched.delete(uri);
      const client = this.getClient();
      client?.unsubscribeResource({ uri }, { timeout: this.server.timeoutMs }).catch((error: unknown) => this.note('event', 'warning', `resources/unsubscribe ${uri} failed: ${describeUpstreamError(error)}`));
      if (this.watched.size === 0 && this.machine.state === 'connected') this.scheduleIdleCheck(this.generation);
    };
  }

  /** The upstream said `params.uri` changed: tell its watchers. */
  private resourceUpdated(params: { uri: string } & Record<string, unknown>): void {
    const entry = this.watched.get(params.uri);
    if (!entry) return;
    for (const listener of [...entry.listeners]) {
      try {
        listener(params);
      } catch (error) {
        this.events.log.warn({ server: this.server.name, error: describeUpstreamError(error) }, 'a resource watcher failed');
      }
    }
  }

  /** After a reconnect: subscribes every watched URI again on the new session (failures noted in the server's log). */
  private resubscribe(client: Client, generation: number): void {
    for (const uri of this.watched.keys()) {
      client.subscribeResource({ uri }, { timeout: this.server.timeoutMs }).then(
        () => generation === this.generation && this.note('event', 'info', `re-subscribed to ${uri} after reconnecting`),
        (error: unknown) => generation === this.generation && this.note('event', 'warning', `re-subscribing to ${uri} failed: ${describeUpstreamError(error)}`),
      );
    }
  }

  /**
   * The SDK client for a call, restarting a parked (idle) stdio server first; undefined when
   * the upstream is not available. Every call goes through here, which also marks it used.
   */
  async ready(): Promise<Client | undefined> {
    return this.readyNow();
  }

  /**
   * {@link ready} without a promise when nothing has to be woken (the hot path): the SDK client
   * or undefined at once, or — for a parked stdio server — the promise of it once woken.
   */
  readyNow(): Client | undefined | Promise<Client | undefined> {
    this.lastUsed = this.clock.now();
    if (this.machine.state !== 'idle') return this.getClient();
    this.waking ??= this.connect().finally(() => (this.waking = undefined));
    return this.waking.then(() => this.getClient());
  }

  /**
   * Calls a tool on the upstream (its own name). 2025-era HTTP upstreams take the pooled
   * {@link HttpForwarder}; everything else the SDK client. Progress notifications arrive as
   * their wire params, with the caller's own `progressToken` (passed in `_meta`).
   */
  callTool(
    params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
    options: { signal?: AbortSignal; onProgress?: (params: Record<string, unknown>) => void; caller?: UpstreamCaller },
  ): Promise<CallToolResult> {
    // track() without its closure: this is the hot path.
    const call = this.begin<CallToolResult>(options.signal, options.caller);
    if (call instanceof Promise) return call;
    let running: Promise<CallToolResult>;
    try {
      const cancellation = call.cancellation;
      running = (this.viaForwarder('tools/call', params, cancellation, options) as Promise<CallToolResult> | undefined) ?? this.callToolViaClient(params, cancellation.signal, options);
    } catch (error) {
      call.failed(error);
      return call.promise;
    }
    call.follow(running);
    return call.promise;
  }

  /** {@link callTool} through the SDK client (every upstream but a 2025-era streamable-HTTP one). */
  private async callToolViaClient(
    params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
    signal: AbortSignal,
    options: { onProgress?: (params: Record<string, unknown>) => void },
  ): Promise<CallToolResult> {
    const timeoutMs = this.server.timeoutMs;
    const client = await this.ready();
    if (!client) throw new DescribedError(this.status.lastError ?? `it is ${this.machine.state}`);
    const progressToken = params._meta?.progressToken;
    return await client.callTool(
      { name: params.name, arguments: params.arguments },
      {
        signal,
        timeout: timeoutMs,
        // The SDK client validates structured content (and mirrors x-mcp headers) from the
        // tool's definition; the lists are walked by Gatehouse, not cached in the client.
        toolDefinition: this.toolDefinition(params.name),
        onprogress: progressToken === undefined || !options.onProgress ? undefined : (p) => options.onProgress!({ ...p, progressToken }),
        // Progress restarts the timeout, within GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT in all.
        ...(progressToken !== undefined && this.events.maxTotalTimeoutMs ? { resetTimeoutOnProgress: true, maxTotalTimeout: Math.max(timeoutMs, this.events.maxTotalTimeoutMs) } : {}),
      },
    );
  }

  /**
   * Sends one request other than `tools/call` — `prompts/get`, `resources/read`,
   * `completion/complete` — like {@link callTool}: 2025-era HTTP upstreams through the pooled
   * forwarder, the rest through the SDK client; requests and log messages the upstream sends
   * while serving it go to `options.caller` exactly as for a tool call (see
   * {@link UpstreamCallers}). Resolves with the upstream's result object; rejects like
   * {@link withClient}.
   */
  async request(
    method: 'prompts/get' | 'resources/read' | 'completion/complete',
    params: Record<string, unknown> & { _meta?: Record<string, unknown> },
    options: { signal?: AbortSignal; onProgress?: (params: Record<string, unknown>) => void; caller?: UpstreamCaller },
  ): Promise<Record<string, unknown>> {
    const release = this.callers.add(options.caller);
    return this.track(options.signal, async (call) => {
      const forwarded = this.viaForwarder(method, params, call, options);
      if (forwarded) return (await forwarded) as Record<string, unknown>;
      const signal = call.signal;
      const client = await this.ready();
      if (!client) throw new DescribedError(this.status.lastError ?? `it is ${this.machine.state}`);
      const progressToken = params._meta?.progressToken;
      return (await client.request({ method, params } as never, {
        signal,
        timeout: this.server.timeoutMs,
        onprogress: progressToken === undefined || !options.onProgress ? undefined : (p: Record<string, unknown>) => options.onProgress!({ ...p, progressToken }),
      } as never));
    }, release);
  }

  /**
   * The request sent through the pooled {@link HttpForwarder} (2025-era streamable-HTTP
   * upstreams), or undefined when the connection has none (then the SDK client serves it).
   * Requests the upstream sends on the call's response stream are this caller's; a forgotten
   * session is renewed once and the request sent again (it was refused, not run).
   */
  private viaForwarder(
    method: string,
    params: Record<string, unknown>,
    cancellation: Cancellation,
    options: { onProgress?: (params: Record<string, unknown>) => void; caller?: UpstreamCaller },
  ): Promise<unknown> | undefined {
    const forwarder = this.machine.state === 'connected' ? this.forwarder : undefined;
    if (!forwarder) return undefined;
    const generation = this.generation;
    // One options object for the call and its resend (request() does not change it).
    const forwardOptions: ForwardOptions = {
      cancellation,
      timeoutMs: this.server.timeoutMs,
      maxTotalTimeoutMs: this.events.maxTotalTimeoutMs,
      onProgress: options.onProgress,
      // The request came on this call's own response stream: it is this caller's.
      onRequest: (requestMethod, requestParams, requestSignal) => this.callers.request(this.server.name, requestMethod, requestParams, requestSignal, options.caller ?? null),
      onNotification: (notificationMethod, notificationParams) => options.caller?.notify?.(notificationMethod, notificationParams),
    };
    return forwarder.request(method, params, forwardOptions).catch((error: unknown) => this.resendOnNewSession(error, generation, method, params, forwardOptions));
  }

  /**
   * {@link viaForwarder}'s request failed with `error`: a forgotten session (refused, not run —
   * see UpstreamSessionLostError) is renewed once and the request sent again on the new one;
   * anything else is rethrown.
   */
  private async resendOnNewSession(error: unknown, generation: number, method: string, params: Record<string, unknown>, options: ForwardOptions): Promise<unknown> {
    if (!isSessionLost(error, true)) throw error;
    await this.renewSession(generation, error);
    const renewed = this.machine.state === 'connected' ? this.forwarder : undefined;
    if (!renewed) throw error;
    return await renewed.request(method, params, options);
  }

  /**
   * Runs `work` with the SDK client (woken from idle first) as a call in flight, like
   * {@link callTool}: idle parking waits for it, and closing the connection fails it at once
   * with {@link UpstreamConnectionClosedError}. For requests other than `tools/call` (prompts,
   * resources, completions): pass the given `signal` on to the SDK request. Throws an `Error`
   * naming the problem when the upstream is not available.
   */
  async withClient<T>(outer: AbortSignal | undefined, work: (client: Client, signal: AbortSignal) => Promise<T>): Promise<T> {
    return this.track(outer, async (call) => {
      const signal = call.signal;
      const client = await this.ready();
      if (!client) throw new DescribedError(this.status.lastError ?? `it is ${this.machine.state}`);
      const generation = this.generation;
      try {
        return await work(client, signal);
      } catch (error) {
        if (!isSessionLost(error, this.transport instanceof StreamableHTTPClientTransport && this.transport.sessionId !== undefined)) throw error;
        await this.renewSession(generation, error);
        const renewed = this.getClient();
        if (!renewed) throw error;
        return await work(renewed, signal);
      }
    });
  }

  /**
   * The upstream forgot the session of connection `generation` (it restarted): starts a new
   * one — initialize, list — once for every call that noticed (single-flight), and notes it
   * in `status.lastRecovery`. Resolves when the connection is usable again or has failed.
   */
  private async renewSession(generation: number, cause: unknown): Promise<void> {
    if (generation === this.generation && this.machine.state === 'connected') {
      const what = this.mask(describeUpstreamError(cause));
      this.events.log.warn({ server: this.server.name, cause: what }, 'upstream forgot its session; re-initializing');
      this.renewing = this.connect().then(() => {
        if (this.machine.state === 'connected') this.setStatus({ lastRecovery: `${new Date(this.clock.now()).toISOString()}: ${what}; re-initialized the session and retried` });
      });
    }
    await this.renewing;
  }

  /**
   * Runs one call as in flight: counted (idle parking waits for it), and failed at once with
   * {@link UpstreamConnectionClosedError} if the connection is closed meanwhile — its
   * cancellation is then aborted too, so the SDK tells the upstream to cancel and HTTP requests
   * are dropped. The caller's own `outer` signal aborts it as before. `release` runs when the
   * call is over (as `finally`). One promise for the call: no async wrapper or `Promise.race`
   * (this is the hot path).
   */
  private track<T>(outer: AbortSignal | undefined, run: (call: Cancellation) => Promise<T>, release?: () => void): Promise<T> {
    const call = this.begin<T>(outer, undefined, release);
    if (call instanceof Promise) return call;
    let running: Promise<T>;
    try {
      running = run(call.cancellation);
    } catch (error) {
      call.failed(error);
      return call.promise;
    }
    call.follow(running);
    return call.promise;
  }

  /**
   * Starts a call for {@link track} (and {@link callTool}, which inlines it): `caller`
   * registered (see {@link UpstreamCallers}) and the call counted until it is over — or, on a
   * closed connection, the rejection with {@link UpstreamConnectionClosedError} (`release` run,
   * nothing registered).
   */
  private begin<T>(outer: AbortSignal | undefined, caller: UpstreamCaller | undefined, release?: () => void): TrackedCall<T> | Promise<T> {
    if (this.machine.state === 'closed') {
      release?.();
      return Promise.reject(new UpstreamConnectionClosedError(this.server.name, this.closeReason ?? 'closed'));
    }
    if (caller) this.callers.add(caller);
    const call = new TrackedCall<T>(this.callHost, outer, this.callers, caller, release);
    this.lastUsed = this.clock.now();
    this.inflight.add(call);
    return call;
  }

  /** The connection's side of its {@link TrackedCall}s (made once). */
  private readonly callHost: CallHost = {
    ended: (call) => {
      this.inflight.delete(call);
      this.lastUsed = this.clock.now();
      // The idle TTL counts from the end of the last call.
      if (this.inflight.size === 0 && this.machine.state === 'connected') this.scheduleIdleCheck(this.generation);
    },
    sanitized: (error) => this.sanitized(error),
  };

  /** Connects (or reconnects). Never rejects: failures become `state: "error"` and a retry. */
  async connect(): Promise<void> {
    if (!this.machine.can('connecting') || !this.server.enabled) return;
    const generation = ++this.generation;
    const offeredBefore = this.signatures();
    this.retryTimer?.cancel();
    this.machine.to('connecting');
    this.endedBecause = undefined;
    await this.dispose();
    if (generation !== this.generation) return;
    try {
      const invalid = this.invalidValue();
      if (invalid) throw new DescribedError(`${invalid}; not sent (fix the server's configuration)`);
      // Starting a server (npx downloads, JVM start-up) can take far longer than a call may:
      // the handshake and first listing get at least HANDSHAKE_TIMEOUT_MS.
      const timeout = { timeout: Math.max(this.server.timeoutMs, HANDSHAKE_TIMEOUT_MS) };
      const { client, transport } = await this.handshake(generation, timeout);
      recordLogNotifications(transport, (level, text) => generation === this.generation && this.note('notification', level, text));
      deliverNotificationsFirst(transport);
      const [tools, prompts, [resources, resourceTemplates]] = await Promise.all([
        this.list(client, 'tools', timeout),
        this.list(client, 'prompts', timeout),
        this.list(client, 'resources', timeout),
      ]);
      if (generation !== this.generation || this.machine.state !== 'connecting') return;
      const negotiated = client.getNegotiatedProtocolVersion();
      // The pooled fast path covers 2025-era sessions; modern upstreams stay on the SDK client,
      // which builds the per-request _meta envelope.
      if (transport instanceof StreamableHTTPClientTransport && negotiated && negotiated < '2026-07-28') {
        this.forwarder = new HttpForwarder(new URL(this.server.url!), this.server.headers, negotiated, transport.sessionId, {
          clock: this.clock,
          ...this.events.http,
          ...(this.server.maxMessageBytes ? { limits: serverLimits(this.server.maxMessageBytes) } : {}),
          redirectOrigins: this.server.redirectOrigins ?? [],
        });
      }
      this.callers.linkedOnly = this.forwarder !== undefined;
      this.subscribable = client.getServerCapabilities()?.resources?.subscribe === true;
      this.tools = tools;
      this.prompts = prompts;
      this.resources = resources;
      this.resourceTemplates = resourceTemplates;
      this.instructions = client.getInstructions();
      this.attempt = 0;
      this.machine.to('connected');
      this.setStatus({ lastError: null, toolCount: tools.length });
      this.events.log.info({ server: this.server.name, tools: tools.length, protocolVersion: negotiated }, 'upstream connected');
      this.note('event', 'info', `connected (protocol ${negotiated ?? 'unknown'}, ${tools.length} tools)`);
      // A restart after parking usually offers the same things: no list_changed for nothing.
      const offeredNow = this.signatures();
      const changedKinds = OFFERING_KINDS.filter((k) => offeredNow[k] !== offeredBefore[k]);
      if (changedKinds.length > 0) this.events.onToolsChanged(this.server.name, changedKinds);
      // The idle TTL counts from when the process is up, not from when it was asked for: a
      // slow start must not be parked the moment it is ready.
      this.lastUsed = this.clock.now();
      this.scheduleIdleCheck(generation);
      this.resubscribe(client, generation);
    } catch (error) {
      // A process that exited during the handshake: its exit code and stderr, not "connection closed".
      this.failed((generation === this.generation && endReasonOf(this.transport)) || error, generation);
    }
  }

  /**
   * Opens the transport and runs `initialize` (see {@link open}). A `streamable_http` server
   * whose POST is refused with a 4xx other than 401/403 (404, 405…) is tried once more over
   * the old HTTP+SSE transport at the same URL — the backwards-compatibility procedure of the
   * MCP transports spec (2025-03-26 and later, basic/transports "Backwards Compatibility": on
   * a 4xx, GET the URL expecting an SSE stream whose first event is `endpoint`). Success is
   * noted in `status.transport` (`sse`) and `status.fallback`; when both fail, the error names
   * both causes.
   */
  private async handshake(generation: number, timeout: { timeout: number }): Promise<{ client: Client; transport: Transport }> {
    this.fallback = undefined;
    if (this.server.transport !== 'streamable_http') return this.open(this.server.transport, generation, timeout);
    try {
      return await this.open('streamable_http', generation, timeout);
    } catch (error) {
      const status = httpStatusOf(error);
      if (status === undefined || status < 400 || status >= 500 || status === 401 || status === 403 || generation !== this.generation) throw error;
      const why = this.mask(describeUpstreamError(error));
      this.note('event', 'info', `streamable HTTP refused (${why}); trying the HTTP+SSE transport (backwards compatibility)`);
      await this.dispose();
      try {
        const opened = await this.open('sse', generation, timeout);
        this.fallback = `streamable HTTP refused (${why}); connected over the HTTP+SSE transport`;
        return opened;
      } catch (sseError) {
        throw new DescribedError(`streamable HTTP refused (${why}), and the HTTP+SSE fallback failed too (${describeUpstreamError(sseError)})`, { cause: sseError });
      }
    }
  }

  /** Creates the SDK client and a `kind` transport, wires them to this connection (generation `generation`) and connects. */
  private async open(kind: UpstreamServerEntity['transport'], generation: number, timeout: { timeout: number }): Promise<{ client: Client; transport: Transport }> {
    const transport = this.createTransport(kind);
    const client = new Client(GATEHOUSE_CLIENT, { capabilities: UPSTREAM_CLIENT_CAPABILITIES, versionNegotiation: { mode: 'auto' } });
    // Lists are walked by `walkPages` (bounded by size, not by the SDK's 64 pages), also
    // when the upstream says one changed.
    for (const listKind of ['tools', 'prompts', 'resources'] as const) {
      client.setNotificationHandler(`notifications/${listKind}/list_changed`, () => void this.refresh(listKind, generation));
    }
    serveClientRequests(client, this.callers, this.server.name);
    client.setNotificationHandler('notifications/resources/updated', (notification) => {
      if (generation === this.generation) this.resourceUpdated(notification.params);
    });
    this.client = client;
    this.transport = transport;
    // While the handshake runs, its own rejection carries the real cause (ECONNREFUSED, HTTP
    // 404…); a close reported first would hide it behind "connection closed".
    let handshaking = true;
    transport.onclose = () => {
      if (generation !== this.generation || this.transport !== transport) return;
      this.endedBecause = endReasonOf(transport);
      if (!handshaking) this.failed(this.endedBecause ?? new DescribedError('connection closed'), generation);
    };
    // Problems the transport or the SDK report without failing a request (a line that is not
    // JSON-RPC, an oversized message, an answer to an unknown id): logged, never thrown.
    client.onerror = (error) => this.note('event', 'warning', describeUpstreamError(error));
    try {
      await client.connect(transport, timeout);
    } finally {
      handshaking = false;
    }
    return { client, transport };
  }

  /**
   * Every page of the upstream's `kind` list(s) (`resources`: resources and templates), or
   * empty when it does not offer them (capabilities). Bounded by `listLimits` ({@link walkPages}).
   */
  private async list(client: Client, kind: 'tools', options: { timeout: number }): Promise<Tool[]>;
  private async list(client: Client, kind: 'prompts', options: { timeout: number }): Promise<Prompt[]>;
  private async list(client: Client, kind: 'resources', options: { timeout: number }): Promise<[Resource[], ResourceTemplateType[]]>;
  private async list(client: Client, kind: OfferingKind, options: { timeout: number }): Promise<unknown> {
    if (!client.getServerCapabilities()?.[kind]) return kind === 'resources' ? [[], []] : [];
    const limits = this.events.listLimits ?? DEFAULT_UPSTREAM_LIST_LIMITS;
    const walk = (method: (typeof LIST_METHODS)[OfferingKind][number], field: string) =>
      walkPages(
        method,
        async (cursor) => {
          const page = (await client.request({ method, ...(cursor === undefined ? {} : { params: { cursor } }) } as never, options)) as Record<string, unknown>;
          return { items: (page[field] as unknown[] | undefined) ?? [], nextCursor: typeof page.nextCursor === 'string' ? page.nextCursor : undefined };
        },
        limits,
      );
    if (kind === 'resources') return Promise.all([walk('resources/list', 'resources'), walk('resources/templates/list', 'resourceTemplates')]);
    return walk(LIST_METHODS[kind][0], kind);
  }

  /**
   * The upstream said its `kind` list changed: list it again (one walk at a time per kind; a
   * change during a walk walks once more after it) and tell the listeners. A failed walk keeps
   * the last list and is logged.
   */
  private async refresh(kind: OfferingKind, generation: number): Promise<void> {
    if (this.refreshing.has(kind)) {
      this.refreshAgain.add(kind);
      return;
    }
    this.refreshing.add(kind);
    try {
      do {
        this.refreshAgain.delete(kind);
        const client = this.client;
        if (!client || generation !== this.generation) return;
        const timeout = { timeout: Math.max(this.server.timeoutMs, HANDSHAKE_TIMEOUT_MS) };
        try {
          if (kind === 'tools') {
            const tools = await this.list(client, 'tools', timeout);
            if (generation !== this.generation) return;
            this.tools = tools;
            this.setStatus({ toolCount: tools.length });
          } else if (kind === 'prompts') {
            const prompts = await this.list(client, 'prompts', timeout);
            if (generation !== this.generation) return;
            this.prompts = prompts;
          } else {
            const [resources, templates] = await this.list(client, 'resources', timeout);
            if (generation !== this.generation) return;
            this.resources = resources;
            this.resourceTemplates = templates;
          }
        } catch (error) {
          this.events.log.warn({ server: this.server.name, kind, error: this.mask(describeUpstreamError(error)) }, 'listing after list_changed failed; keeping the last list');
          continue;
        }
        this.events.onToolsChanged(this.server.name, [kind]);
      } while (this.refreshAgain.has(kind));
    } finally {
      this.refreshing.delete(kind);
    }
  }

  /**
   * The masker for the values Gatehouse hands this upstream: its env, headers and inject
   * literals and the credentials in its args (`--token VALUE`; from 8 characters), the secret values among them (any length), and the
   * injected secret values noted so far.
   */
  private buildMasker(): void {
    const s = this.current;
    const secrets = new Set([...(this.events.secretValues ?? []), ...this.noted]);
    const values: MaskedValue[] = [...secrets].map((value) => ({ value, secret: true }));
    for (const value of [...Object.values(s.env), ...Object.values(s.headers), ...Object.values(s.inject ?? {}), ...credentialsInArgs(s.args ?? [])]) {
      if (!secrets.has(value)) values.push({ value, secret: false });
    }
    this.masker = new ValueMasker(values);
  }

  /**
   * What a call's error becomes for the caller: a JSON-RPC error from the upstream keeps its
   * code and data, its message masked; Gatehouse's own errors pass; anything else is
   * described by its code ({@link describeUpstreamError}), never by its message.
   */
  private sanitized(error: unknown): unknown {
    if (error instanceof UpstreamConnectionClosedError) return error;
    // A 401/403 keeps its challenge (Gatehouse's own words; the caller refreshes or asks for scopes).
    const refused = authErrorIn(error);
    if (refused) return refused;
    // The SDK's "Connection closed" for a call whose stdio process ended: say why it ended.
    if (this.endedBecause && error instanceof SdkError && error.code === SdkErrorCode.ConnectionClosed) return new DescribedError(this.mask(this.endedBecause.message));
    if (error instanceof ProtocolError) {
      const message = this.mask(error.message);
      const data = this.maskData(error.data);
      return message === error.message && data === error.data ? error : new ProtocolError(error.code, message, data);
    }
    return new DescribedError(this.mask(describeUpstreamError(error)));
  }

  /** An upstream error's `data`, masked as JSON text; dropped if masking left it unparsable. */
  private maskData(data: unknown): unknown {
    if (data === undefined || this.masker.empty) return data;
    const json = JSON.stringify(data);
    if (json === undefined) return data;
    const masked = this.mask(json);
    if (masked === json) return data;
    try {
      return JSON.parse(masked) as unknown;
    } catch {
      return undefined;
    }
  }

  /**
   * A configured value its place cannot hold (stored before validation existed, or resolved
   * from a secret): `env.NAME: contains a NUL character…`. Checked before anything is started
   * or sent, so Node's or fetch's own error — which quotes the value — never happens.
   */
  private invalidValue(): string | undefined {
    const s = this.current;
    if (s.transport === 'stdio') {
      for (const [key, value] of Object.entries(s.env)) {
        const problem = valueProblem(value, 'env');
        if (problem) return `env.${key}: ${problem}`;
      }
      return undefined;
    }
    for (const [key, value] of Object.entries(s.headers)) {
      const problem = valueProblem(value, 'header');
      if (problem) return `headers.${key}: ${problem}`;
    }
    return undefined;
  }

  /** What the upstream offers, per kind, as comparable text. */
  private signatures(): Record<OfferingKind, string> {
    return { tools: JSON.stringify(this.tools), prompts: JSON.stringify(this.prompts), resources: JSON.stringify([this.resources, this.resourceTemplates]) };
  }

  /**
   * Parks a stdio server whose process has had no call for `idleTtlMs`; its offerings stay
   * listed. Never while a call is in flight: the check is put off until it is over.
   */
  private scheduleIdleCheck(generation: number): void {
    const ttl = this.events.idleTtlMs ?? 0;
    if (ttl <= 0 || this.server.transport !== 'stdio') return;
    this.idleTimer?.cancel();
    const wait = Math.max(50, this.lastUsed + ttl - this.clock.now());
    this.idleTimer = this.clock.setTimer(() => {
      // Busy: the end of the last call in flight schedules the next check.
      // Watched resources: parking would end the upstream's subscriptions (the next release reschedules).
      if (generation !== this.generation || this.machine.state !== 'connected' || this.inflight.size > 0 || this.watched.size > 0) return;
      if (this.clock.now() - this.lastUsed < ttl) return this.scheduleIdleCheck(generation);
      this.generation++; // the process exit that follows is not a failure
      this.events.log.info({ server: this.server.name, idleMs: this.clock.now() - this.lastUsed }, 'stopping idle stdio upstream');
      this.machine.to('idle');
      this.note('event', 'info', 'stopped after GATEHOUSE_STDIO_IDLE_TTL without calls; the next call starts it');
      void this.dispose();
    }, wait);
  }

  /**
   * Disconnects for good (server deleted, disabled or replaced, secrets changed, evicted,
   * shutdown). Every call in flight fails at once with {@link UpstreamConnectionClosedError}
   * carrying `reason` (short, no secrets: "configuration changed"). Idempotent; resolves when
   * the transport is closed (a stdio process group has exited).
   */
  async close(reason = 'the connection was closed'): Promise<void> {
    if (this.machine.state === 'closed') return this.closing;
    this.closeReason = reason;
    this.generation++;
    this.retryTimer?.cancel();
    this.idleTimer?.cancel();
    this.machine.to('closed');
    // Whoever still holds this connection learns why it is gone (`status.lastError`).
    this.setStatus({ lastError: `the connection was closed (${reason})` });
    this.note('event', 'info', `closed (${reason})`);
    const error = new UpstreamConnectionClosedError(this.server.name, reason);
    for (const call of [...this.inflight]) call.fail(error);
    this.closing = this.dispose();
    return this.closing;
  }

  private failed(error: unknown, generation: number): void {
    // A crash is reported twice (transport close, then the pending request): count it once.
    if (generation !== this.generation || !this.machine.can('error') || this.failedGeneration === generation) return;
    this.failedGeneration = generation;
    const message = this.mask(describeUpstreamError(error));
    const had: OfferingKind[] = [];
    if (this.tools.length > 0) had.push('tools');
    if (this.prompts.length > 0) had.push('prompts');
    if (this.resources.length + this.resourceTemplates.length > 0) had.push('resources');
    this.tools = [];
    this.prompts = [];
    this.resources = [];
    this.resourceTemplates = [];
    this.machine.to('error');
    this.setStatus({ lastError: message, toolCount: 0 });
    if (had.length > 0) this.events.onToolsChanged(this.server.name, had);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    this.events.log.warn({ server: this.server.name, error: message, retryInMs: delay }, 'upstream unavailable');
    this.note('event', 'error', `unavailable: ${message}; retrying in ${delay} ms`);
    void this.dispose();
    this.retryTimer?.cancel();
    this.retryTimer = this.clock.setTimer(() => void this.connect(), delay);
  }

  private async dispose(): Promise<void> {
    const client = this.client;
    const transport = this.transport;
    const forwarder = this.forwarder;
    this.client = undefined;
    this.transport = undefined;
    this.forwarder = undefined;
    // The transport's onclose stays: through it the SDK client rejects its pending requests
    // at once ("Connection closed") instead of letting them wait out their timeout.
    await forwarder?.close();
    await client?.close().catch(() => undefined);
    await transport?.close().catch(() => undefined);
  }

  private createTransport(kind: UpstreamServerEntity['transport']): Transport {
    const s = this.server;
    if (kind === 'stdio') {
      return new ProcessGroupStdioTransport({
        command: s.command!,
        args: s.args,
        env: s.env,
        cwd: s.cwd ?? undefined,
        spawner: this.events.spawner,
        // The server's own cap, else GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE.
        maxMessageBytes: s.maxMessageBytes ?? this.events.maxMessageBytes,
        ...(s.maxMessageBytes ? { maxMessageSetBy: `the server's maxMessageBytes` } : {}),
        serverName: s.name,
        onStderr: (line) => {
          const masked = this.mask(line);
          this.events.log.debug({ server: s.name, stderr: masked.slice(0, 2000) }, 'upstream stderr');
          this.events.serverLog?.add('stderr', 'info', masked);
        },
      });
    }
    const url = new URL(s.url!);
    const requestInit = { headers: s.headers };
    // Redirects to other origins only where the server's config allows them (else the SDK's
    // same-origin rule); refusals (429/503) sent again within the server's timeout.
    const retry = this.events.http?.retry ?? DEFAULT_RETRY;
    const retrying = fetchRetryingRefusals(s.redirectOrigins?.length ? fetchWithinOrigins(new Set(s.redirectOrigins)) : fetch, retry, s.timeoutMs);
    // OAuth servers: 401/403 carry the challenge to the caller (refresh and retry, or ask to connect).
    const fetchFn = s.oauth ? (fetchObservingAuth(retrying)) : retrying;
    const options = { requestInit, fetch: fetchFn, ...(s.redirectOrigins?.length ? { redirectPolicy: 'follow' as const } : {}) };
    return kind === 'sse' ? new SSEClientTransport(url, options) : new StreamableHTTPClientTransport(url, options);
  }

  /** Records a line in the server's log ring, masked. */
  private note(source: ServerLogSource, level: string, text: string): void {
    this.events.serverLog?.add(source, level, this.mask(text));
  }

  private setStatus(patch: Partial<Omit<UpstreamStatus, 'state'>>): void {
    this.status = { ...this.status, ...patch, updatedAt: new Date(this.clock.now()).toISOString() };
  }

  private touchStatus(): void {
    this.setStatus({});
  }
}

/** The HTTP status an SDK transport error carries (`SdkHttpError.status`, the legacy SSE transport's `code`), if any. */
function httpStatusOf(error: unknown): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const status = (error as { status?: unknown }).status;
  return typeof status === 'number' && Number.isInteger(status) ? status : undefined;
}

/** Why a stdio transport ended on its own (exit code and stderr, stdout closed), if it did. */
function endReasonOf(transport: Transport | undefined): Error | undefined {
  return transport instanceof ProcessGroupStdioTransport ? transport.endReason : undefined;
}

/** The HTTP upstream settings of `config` as {@link ConnectionEvents.http}. */
export function httpOptions(config: AppConfig): HttpForwarderOptions {
  return { limits: { maxEventChars: config.upstreams.httpMaxEventChars, maxResponseBytes: config.upstreams.httpMaxResponseBytes } };
}

/**
 * What a live connection depends on: a change to any of these needs a new connection (a new
 * process, a new HTTP session); anything else (description, timeout, tool filter, inject) is
 * taken by {@link UpstreamConnection.update} in place.
 */
export function connectionKey(s: UpstreamServerEntity): string {
  return JSON.stringify([s.transport, s.command, s.args, s.env, s.cwd, s.url, s.headers, s.enabled, s.redirectOrigins ?? [], s.maxMessageBytes ?? null, s.oauth ?? null]);
}

/**
 * The HTTP response caps of a server with its own `maxMessageBytes`: one SSE event and one
 * response body may each carry that many (instead of GATEHOUSE_HTTP_MAX_EVENT_SIZE and
 * GATEHOUSE_HTTP_MAX_RESPONSE_BYTES), and errors name the server's field.
 */
export function serverLimits(maxMessageBytes: number): ResponseLimits {
  return { maxEventChars: maxMessageBytes, maxResponseBytes: maxMessageBytes, setBy: `the server's maxMessageBytes (${maxMessageBytes} bytes)` };
}
