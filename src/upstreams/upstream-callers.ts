import { ProtocolError, ProtocolErrorCode, type Client } from '@modelcontextprotocol/client';

/** Server-to-client request methods an upstream may send while serving a call (MCP spec, client features). */
export const SERVER_REQUEST_METHODS = ['sampling/createMessage', 'elicitation/create', 'roots/list'] as const;
export type ServerRequestMethod = (typeof SERVER_REQUEST_METHODS)[number];

/**
 * The client capabilities Gatehouse declares to every upstream: the union of what clients may
 * answer (MCP spec, basic/lifecycle "Capability Negotiation"). One shared connection serves many
 * clients, so the upstream learns the union and each request is refused per call, with
 * -32021 (MissingRequiredClientCapability), when the calling client lacks the capability.
 */
export const UPSTREAM_CLIENT_CAPABILITIES = { sampling: {}, elicitation: { form: {}, url: {} }, roots: {} };

/** JSON-RPC code of MissingRequiredClientCapability (MCP 2026-07-28, basic/patterns/mrtr). */
export const MISSING_CLIENT_CAPABILITY = -32021;

/**
 * The client a call is made for, as the upstream connection sees it: what that client can
 * answer, and how to reach it. Built by the MCP edge per call (see `mcp/pipeline/server-requests.ts`).
 */
export interface UpstreamCaller {
  /** The calling client's declared capabilities (`sampling`, `elicitation`, `roots`…). */
  capabilities: Record<string, unknown> | undefined;
  /**
   * Sends `method` to the calling client and resolves with its result (the bare result
   * object), or rejects with a `ProtocolError` (the client's error, or why it cannot be asked).
   */
  request(method: ServerRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal): Promise<Record<string, unknown>>;
  /** Passes a notification the upstream sent while serving this call (e.g. `notifications/message`). */
  notify?(method: string, params: Record<string, unknown> | undefined): void;
}

/**
 * The capability `method` needs from the client and whether `capabilities` declares it; for
 * URL-mode elicitation the `elicitation.url` sub-capability (MCP 2025-11-25, client/elicitation:
 * an empty `elicitation` object means form mode only).
 */
export function missingCapability(method: ServerRequestMethod, params: Record<string, unknown> | undefined, capabilities: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  const caps = capabilities ?? {};
  switch (method) {
    case 'sampling/createMessage':
      return caps.sampling === undefined ? { sampling: {} } : undefined;
    case 'roots/list':
      return caps.roots === undefined ? { roots: {} } : undefined;
    case 'elicitation/create': {
      const elicitation = caps.elicitation as Record<string, unknown> | undefined;
      if (elicitation === undefined) return { elicitation: {} };
      if (params?.mode === 'url' && (typeof elicitation !== 'object' || elicitation === null || elicitation.url === undefined)) return { elicitation: { url: {} } };
      return undefined;
    }
  }
}

/**
 * The calls in flight on one upstream connection and the clients they are made for: routes a
 * request or notification the upstream sends to the client whose call caused it.
 *
 * Which call caused it: a streamable-HTTP upstream sends it on that call's response stream
 * (exact; the forwarder passes the call's own caller). A stdio or SSE upstream sends it on the
 * one shared pipe, where a 2025-era message carries no link to the request it serves: it goes
 * to the only call in flight that has a client behind it, and is refused (never guessed) when
 * there are several — sending one user's sampling prompt to another user's client would leak it.
 */
const noop = (): void => undefined;

export class UpstreamCallers {
  private readonly callers = new Set<UpstreamCaller>();
  /**
   * Set while calls go through a streamable-HTTP forwarder: their requests arrive on their own
   * response streams, so anything the SDK client receives (the session's GET stream) serves no
   * call (MCP spec 2025-11-25, basic/transports: such messages SHOULD be unrelated to any
   * request) and is refused rather than given to the sole caller.
   */
  linkedOnly = false;

  /** Registers `caller` for the duration of one call; returns its removal (or {@link remove} it). */
  add(caller: UpstreamCaller | undefined): () => void {
    if (!caller) return noop;
    this.callers.add(caller);
    return () => this.callers.delete(caller);
  }

  /** The call of `caller` is over (the removal {@link add} returns, without a closure per call). */
  remove(caller: UpstreamCaller): void {
    this.callers.delete(caller);
  }

  /** The caller a message without a link to its request belongs to, or undefined (none, or ambiguous). */
  sole(): UpstreamCaller | undefined {
    if (this.callers.size !== 1) return undefined;
    return this.callers.values().next().value;
  }

  /**
   * Asks the client behind `caller` — undefined: the request carries no link, so the sole
   * caller; null: linked to a call made without a client behind it — and resolves with its answer. Throws a `ProtocolError` the upstream receives as the JSON-RPC error: no call in
   * flight (a request outside any call: Gatehouse has no client to ask), several calls (cannot
   * tell whose), or the client lacks the capability (-32021).
   */
  async request(server: string, method: ServerRequestMethod, params: Record<string, unknown> | undefined, signal: AbortSignal, linked?: UpstreamCaller | null): Promise<Record<string, unknown>> {
    const caller = linked === undefined ? this.sole() : (linked ?? undefined);
    if (!caller) {
      const why =
        this.callers.size === 0 || linked === null
          ? 'it was not sent while a client call was in flight, and Gatehouse has no client to ask outside a call'
          : `${this.callers.size} client calls are in flight on this connection and the request does not say which one it serves`;
      throw new ProtocolError(ProtocolErrorCode.InvalidRequest, `Gatehouse cannot route ${method} from "${server}": ${why}`);
    }
    const missing = missingCapability(method, params, caller.capabilities);
    if (missing) {
      throw new ProtocolError(MISSING_CLIENT_CAPABILITY, `The client calling through Gatehouse does not support ${method}${params?.mode === 'url' ? ' (URL mode)' : ''}`, {
        requiredCapabilities: missing,
      });
    }
    return caller.request(method, params, signal);
  }
}

/**
 * Makes `client` (an upstream connection's SDK client) answer the upstream's server-to-client
 * requests by asking the calling client ({@link UpstreamCallers.request}) and pass its log
 * messages to the calling client. A 2026-07-28 upstream's `input_required` results reach the
 * same handlers: the SDK client fulfils them through them and retries (its `inputRequired`
 * driver).
 */
export function serveClientRequests(client: Client, callers: UpstreamCallers, server: string): void {
  for (const method of SERVER_REQUEST_METHODS) {
    client.setRequestHandler(method, ((request: { params?: Record<string, unknown> }, ctx: { mcpReq: { signal: AbortSignal } }) =>
      callers.request(server, method, request.params, ctx.mcpReq.signal, callers.linkedOnly ? null : undefined)) as never);
  }
  client.setNotificationHandler('notifications/message', (notification) => {
    if (!callers.linkedOnly) callers.sole()?.notify?.(notification.method, notification.params);
  });
}
