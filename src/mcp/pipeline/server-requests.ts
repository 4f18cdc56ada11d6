import { Inject, Injectable, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import type { ServerRequestMethod, UpstreamCaller } from '../../upstreams/upstream-callers.js';
import { InputRequiredRelay } from './input-required-relay.js';
import { LogLevels } from './log-levels.js';

/**
 * The client an operation is served for, as far as talking back to it goes: what it declared
 * it can answer, and — per era — how a server-to-client request reaches it.
 *
 * - 2025 era: `sessionId` (answers come back as POSTs on the session) and, on the SDK path,
 *   `send`, which writes a request on this call's response stream (SSE); without `send` the
 *   session's GET stream is used (MCP spec 2025-11-25, basic/transports "Listening for
 *   Messages from the Server").
 * - 2026-07-28: `inputResponses` / `requestState` of a retried request (MRTR, basic/patterns/mrtr).
 */
export interface CallingClient {
  capabilities?: Record<string, unknown>;
  sessionId?: string;
  send?: (message: Record<string, unknown>) => Promise<void>;
  /** Writes a notification on this call's response stream (SDK path, both eras); without it, 2025 era: the session's GET stream. */
  notify?: (method: string, params: Record<string, unknown> | undefined) => void;
  inputResponses?: Record<string, unknown>;
  requestState?: string;
}

/** Bus topic: a 2025-era client's answer `{ key, message }` reached a replica that did not ask. */
const CLIENT_ANSWER = 'mcp.client-answer';

interface PendingAnswer {
  resolve(result: Record<string, unknown>): void;
  reject(error: Error): void;
}

interface RpcAnswer {
  id?: unknown;
  result?: unknown;
  error?: { code?: unknown; message?: unknown; data?: unknown };
}

/** A client's JSON-RPC answer (a response, not a request or notification). */
export function isClientAnswer(body: unknown): body is RpcAnswer {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return false;
  const m = body as Record<string, unknown>;
  return m.method === undefined && (typeof m.id === 'string' || typeof m.id === 'number') && ('result' in m || 'error' in m);
}

/**
 * Server-to-client requests to 2025-era clients: sends an upstream's `sampling/createMessage`,
 * `elicitation/create` or `roots/list` to the client of the call that caused it — on that call's
 * SSE response stream, else on the session's GET stream — under a Gatehouse-minted id, and
 * settles it when the client POSTs its answer on the session (here, or on another replica: the
 * answer is then passed on over the change bus). A request whose call ends first is rejected
 * with the call's abort reason; the upstream gets that as its JSON-RPC error.
 */
@Injectable()
export class ClientRequests implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly pending = new Map<string, PendingAnswer>();
  /** Writes an SSE event to a session's GET stream on this replica; false when none is open here. */
  private sessionStream: (sessionId: string, event: string) => boolean = () => false;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly bus: ChangeBusService,
    private readonly logLevels: LogLevels,
  ) {}

  onApplicationBootstrap(): void {
    this.unsubscribe = this.bus.subscribe<{ key?: string; message?: RpcAnswer }>(CLIENT_ANSWER, (event) => {
      if (!event.local && event.data?.key && event.data.message) this.settleKey(event.data.key, event.data.message);
    });
  }

  beforeApplicationShutdown(): void {
    this.unsubscribe?.();
  }

  /** Set by the notification fan-out, which holds the GET streams. */
  useSessionStreams(write: (sessionId: string, event: string) => boolean): void {
    this.sessionStream = write;
  }

  /**
   * Asks `client` and resolves with its result; rejects with its JSON-RPC error as a
   * `ProtocolError`, with a ProtocolError when it cannot be reached (no session, no open
   * stream), or with `signal`'s reason when the call ends first.
   */
  ask(client: CallingClient, method: ServerRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal): Promise<Record<string, unknown>> {
    const sessionId = client.sessionId;
    if (!sessionId) return Promise.reject(new ProtocolError(ProtocolErrorCode.InvalidRequest, `The client has no session to receive ${method}`));
    const id = `gatehouse-${randomBytes(12).toString('base64url')}`;
    const key = `${sessionId}:${JSON.stringify(id)}`;
    const message = { jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) };
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const done = () => {
        this.pending.delete(key);
        signal.removeEventListener('abort', abort);
      };
      const abort = () => {
        done();
        reject(signal.reason instanceof Error ? signal.reason : new ProtocolError(ProtocolErrorCode.InternalError, 'The call ended before the client answered'));
      };
      if (signal.aborted) return abort();
      signal.addEventListener('abort', abort, { once: true });
      this.pending.set(key, {
        resolve: (result) => {
          done();
          resolve(result);
        },
        reject: (error) => {
          done();
          reject(error);
        },
      });
      const refuse = (why: string) => this.pending.get(key)?.reject(new ProtocolError(ProtocolErrorCode.InvalidRequest, why));
      if (client.send) {
        client.send(message).catch(() => refuse(`The client's response stream closed before ${method} could be sent`));
      } else if (!this.sessionStream(sessionId, `event: message\ndata: ${JSON.stringify(message)}\n\n`)) {
        refuse(`The client has no open stream to receive ${method}: open the session's GET stream, or call with a progress token so the answer streams`);
      }
    });
  }

  /**
   * A 2025-era client POSTed a JSON-RPC response on `sessionId`: settles the request it answers,
   * here or (over the change bus) on the replica that asked. Always accepted (202): an answer
   * to an unknown or finished request is dropped, as the spec lets a receiver ignore it.
   */
  answer(sessionId: string, message: RpcAnswer): void {
    const key = `${sessionId}:${JSON.stringify(message.id)}`;
    if (this.settleKey(key, message)) return;
    void this.bus.publish(CLIENT_ANSWER, { key, message }).catch(() => undefined);
  }

  private settleKey(key: string, message: RpcAnswer): boolean {
    const pending = this.pending.get(key);
    if (!pending) return false;
    if (message.error !== undefined) {
      const e = message.error;
      const code = Number.isSafeInteger(e?.code) ? (e.code as number) : ProtocolErrorCode.InternalError;
      pending.reject(new ProtocolError(code, typeof e?.message === 'string' ? e.message : 'The client answered with an error', e?.data));
    } else if (typeof message.result === 'object' && message.result !== null && !Array.isArray(message.result)) {
      pending.resolve(message.result as Record<string, unknown>);
    } else {
      pending.reject(new ProtocolError(ProtocolErrorCode.InvalidParams, 'The client answered with a result that is not an object'));
    }
    return true;
  }

  /**
   * The upstream caller for a 2025-era client: requests go through {@link ask}; notifications
   * (log messages at or above the session's level, {@link LogLevels}) on the call's stream, else
   * the session's GET stream.
   */
  callerFor(client: CallingClient): UpstreamCaller {
    return new SessionCaller(this, client);
  }

  /**
   * A notification an upstream sent while serving `client`'s call ({@link callerFor}'s
   * `notify`): a log message below the session's level is dropped; the rest go on the call's
   * stream, else the session's GET stream.
   */
  notifyClient(client: CallingClient, method: string, params: Record<string, unknown> | undefined): void {
    if (method === 'notifications/message' && !this.logLevels.allows(client.sessionId, params?.level)) return;
    if (client.notify) client.notify(method, params);
    else if (client.sessionId) this.sessionStream(client.sessionId, `event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method, ...(params === undefined ? {} : { params }) })}\n\n`);
  }
}

/**
 * {@link ClientRequests.callerFor}'s caller: one object per call with its methods on the
 * prototype, instead of an object and two closures (every 2025-era tools/call makes one).
 * Called as methods (`caller.request(…)`, `caller.notify?.(…)`), never detached or spread.
 */
class SessionCaller implements UpstreamCaller {
  readonly capabilities: Record<string, unknown> | undefined;

  constructor(
    private readonly requests: ClientRequests,
    private readonly client: CallingClient,
  ) {
    this.capabilities = client.capabilities;
  }

  request(method: ServerRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal): Promise<Record<string, unknown>> {
    return this.requests.ask(this.client, method, params, signal);
  }

  notify(method: string, params: Record<string, unknown> | undefined): void {
    this.requests.notifyClient(this.client, method, params);
  }
}

/** One embedded request waiting for a 2026-07-28 client's answer. */
interface PendingInput {
  method: ServerRequestMethod;
  params: Record<string, unknown> | undefined;
  resolve(result: Record<string, unknown>): void;
  reject(error: Error): void;
}

/** A call parked between the rounds of a multi round-trip request. */
interface ParkedCall {
  owner: string;
  target: string;
  inputs: Map<string, PendingInput>;
  /** Set while a round waits: called when the upstream asks for input. */
  wake: (() => void) | undefined;
  outcome: Promise<{ ok: true; value: Record<string, unknown> } | { ok: false; error: unknown }>;
  settled: boolean;
  abort: AbortController;
  expiry: NodeJS.Timeout | undefined;
  next: number;
}

/** The `input_required` result (MCP 2026-07-28, basic/patterns/mrtr). */
export interface InputRequiredResult extends Record<string, unknown> {
  resultType: 'input_required';
  inputRequests: Record<string, { method: string; params?: Record<string, unknown> }>;
  requestState: string;
}

const unknownState = () =>
  new ProtocolError(ProtocolErrorCode.InvalidParams, 'requestState is unknown or has expired (GATEHOUSE_INPUT_REQUIRED_TTL), or belongs to another call: call again without it');

/**
 * Bridges upstream server-to-client requests to 2026-07-28 clients (MRTR, basic/patterns/mrtr):
 * when the upstream asks for input during a call, the call is parked on this replica and the
 * client gets an `input_required` result carrying the embedded requests and a `requestState`
 * (a random 128-bit handle, bound to the principal and the tool). The client retries the same
 * request with `inputResponses` and that `requestState`; the answers go to the waiting upstream
 * requests, and the round ends with the call's result or the next `input_required`.
 *
 * The upstream call itself stays one call (it may have effects; it is never re-sent). A parked
 * call whose client does not come back within GATEHOUSE_INPUT_REQUIRED_TTL has its upstream
 * requests refused and is cancelled. The call lives in this replica's memory; its
 * `requestState` names this replica, so a retry that reaches another replica is relayed here
 * and answered there ({@link InputRequiredRelay}); without a relay (unit tests) such a retry
 * gets -32602.
 */
@Injectable()
export class InputRequiredBroker implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly parked = new Map<string, ParkedCall>();
  private readonly ttlMs: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    @Optional() private readonly relay?: InputRequiredRelay,
  ) {
    this.ttlMs = config.upstreams.inputRequiredTtlMs;
  }

  onApplicationBootstrap(): void {
    this.relay?.serve((retry, signal) =>
      this.resume(retry.principalId, retry.target, { requestState: retry.requestState, inputResponses: retry.inputResponses }, signal),
    );
  }

  beforeApplicationShutdown(): void {
    for (const [id, call] of this.parked) this.expire(id, call, 'Gatehouse is shutting down');
  }

  /**
   * Starts a call for a 2026-07-28 client: `invoke(caller, signal)` runs the upstream call with
   * `caller` (whose requests become embedded input requests) and `signal` (aborted when the
   * call is given up). Resolves with the call's result or an `input_required` result.
   */
  start(
    owner: string,
    target: string,
    client: CallingClient,
    legSignal: AbortSignal | undefined,
    invoke: (caller: UpstreamCaller, signal: AbortSignal) => Promise<Record<string, unknown>>,
  ): Promise<Record<string, unknown>> {
    const call: ParkedCall = { owner, target, inputs: new Map(), wake: undefined, outcome: undefined!, settled: false, abort: new AbortController(), expiry: undefined, next: 0 };
    const caller: UpstreamCaller = {
      capabilities: client.capabilities,
      notify: client.notify,
      request: (method, params, signal) =>
        new Promise((resolve, reject) => {
          const key = `${method.split('/')[0]}-${++call.next}`;
          const input: PendingInput = {
            method,
            params,
            resolve: (r) => (call.inputs.delete(key), resolve(r)),
            reject: (e) => (call.inputs.delete(key), reject(e)),
          };
          call.inputs.set(key, input);
          signal.addEventListener('abort', () => input.reject(signal.reason instanceof Error ? signal.reason : new Error('cancelled')), { once: true });
          call.wake?.();
        }),
    };
    call.outcome = invoke(caller, call.abort.signal).then(
      (value) => ({ ok: true as const, value }),
      (error: unknown) => ({ ok: false as const, error }),
    );
    void call.outcome.then(() => {
      call.settled = true;
      for (const input of call.inputs.values()) input.reject(new ProtocolError(ProtocolErrorCode.InternalError, 'The call ended'));
      call.wake?.();
    });
    const random = randomBytes(16).toString('base64url');
    return this.round(this.relay?.mintState(random) ?? random, call, legSignal);
  }

  /**
   * A retried request carrying `requestState`: hands its `inputResponses` to the waiting
   * upstream requests and resolves with the next round's answer. A state minted by another
   * replica is relayed to it ({@link InputRequiredRelay.forward}) and its answer returned.
   * -32602 for a state that is unknown, expired, or another principal's or tool's (checked
   * where the call is held), or whose replica is gone.
   */
  resume(owner: string, target: string, client: CallingClient, legSignal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    const id = client.requestState!;
    const call = this.parked.get(id);
    const elsewhere = call ? undefined : this.relay?.ownerOf(id);
    if (elsewhere !== undefined) return this.relay!.forward(elsewhere, { principalId: owner, target, requestState: id, inputResponses: client.inputResponses ?? {} }, legSignal);
    if (!call || call.owner !== owner || call.target !== target) return Promise.reject(unknownState());
    this.parked.delete(id);
    clearTimeout(call.expiry);
    const responses = client.inputResponses ?? {};
    for (const [key, input] of [...call.inputs]) {
      const answer = responses[key];
      if (typeof answer === 'object' && answer !== null && !Array.isArray(answer)) input.resolve(answer as Record<string, unknown>);
    }
    return this.round(id, call, legSignal);
  }

  /** One round: waits for the call's outcome or its next input request(s). */
  private async round(id: string, call: ParkedCall, legSignal: AbortSignal | undefined): Promise<Record<string, unknown>> {
    const onLegAbort = () => call.abort.abort(legSignal?.reason);
    legSignal?.addEventListener('abort', onLegAbort, { once: true });
    try {
      if (call.inputs.size === 0 && !call.settled) {
        await new Promise<void>((resolve) => (call.wake = resolve));
        call.wake = undefined;
        // Requests the upstream sends together go out in one round.
        await new Promise((resolve) => setImmediate(resolve));
      }
      if (call.inputs.size === 0 || call.settled) {
        const outcome = await call.outcome;
        if (outcome.ok) return outcome.value;
        throw outcome.error;
      }
      const inputRequests: InputRequiredResult['inputRequests'] = {};
      for (const [key, input] of call.inputs) inputRequests[key] = { method: input.method, ...(input.params === undefined ? {} : { params: modernParams(input.method, input.params) }) };
      this.parked.set(id, call);
      call.expiry = setTimeout(() => this.expire(id, call, 'the client did not answer in time (GATEHOUSE_INPUT_REQUIRED_TTL)'), this.ttlMs);
      call.expiry.unref();
      return { resultType: 'input_required', inputRequests, requestState: id } satisfies InputRequiredResult;
    } finally {
      legSignal?.removeEventListener('abort', onLegAbort);
    }
  }

  private expire(id: string, call: ParkedCall, why: string): void {
    if (this.parked.get(id) !== call) return;
    this.parked.delete(id);
    clearTimeout(call.expiry);
    const error = new ProtocolError(ProtocolErrorCode.InternalError, `Gatehouse gave up waiting for the client's answer: ${why}`);
    for (const input of [...call.inputs.values()]) input.reject(error);
    call.abort.abort(error);
  }
}

/**
 * An upstream's request params as a 2026-07-28 embedded request: the 2025-era URL-mode
 * `elicitationId` is not part of that shape (correlation is the server's requestState), and
 * `_meta` envelope keys are the upstream's own business.
 */
function modernParams(method: string, params: Record<string, unknown>): Record<string, unknown> {
  if (method === 'elicitation/create' && params.mode === 'url' && 'elicitationId' in params) {
    const { elicitationId: _dropped, ...rest } = params;
    return rest;
  }
  return params;
}
