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
import { HttpForwarder, UpstreamSessionLostError } from './http-forwarder.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';
import { ProcessGroupStdioTransport } from './stdio-transport.js';

/** Time allowed for a server to start, answer `initialize` and list what it offers. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** `idle`: a stdio server parked after GATEHOUSE_STDIO_IDLE_TTL without calls; the next call restarts it. */
export type UpstreamState = 'connected' | 'connecting' | 'error' | 'disabled' | 'idle';

export interface UpstreamStatus {
  state: UpstreamState;
  lastError: string | null;
  toolCount: number;
  updatedAt: string;
}

export interface ConnectionEvents {
  log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
  /** The upstream's tools, prompts or resources changed (after connect, or on its list-changed notification). */
  onToolsChanged(name: string): void;
  /** Stop a stdio server's process after this long without calls (0: keep it running). */
  idleTtlMs?: number;
}

const GATEHOUSE_CLIENT = { name: 'gatehouse', version: '0.1.0' };
const BACKOFF_MIN_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;

/** First line of an error, without anything that looks like a credential in a URL. */
function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0].replace(/\/\/[^/@\s]+@/g, '//[REDACTED]@').slice(0, 500);
}

/**
 * One replica's live connection to one upstream MCP server, through the official SDK client
 * (which negotiates the newest protocol era the server speaks). Keeps the server's tool list,
 * reports its status, and reconnects with exponential backoff after a failure.
 */
export class UpstreamConnection {
  private client: Client | undefined;
  private transport: Transport | undefined;
  private forwarder: HttpForwarder | undefined;
  private tools: Tool[] = [];
  private prompts: Prompt[] = [];
  private resources: Resource[] = [];
  private resourceTemplates: ResourceTemplateType[] = [];
  private status: UpstreamStatus;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;
  private closed = false;
  private generation = 0;
  private lastUsed = Date.now();
  private failedGeneration = -1;
  private idleTimer: NodeJS.Timeout | undefined;
  private waking: Promise<void> | undefined;

  constructor(
    readonly server: UpstreamServerEntity,
    private readonly events: ConnectionEvents,
  ) {
    this.status = { state: server.enabled ? 'connecting' : 'disabled', lastError: null, toolCount: 0, updatedAt: new Date().toISOString() };
  }

  getStatus(): UpstreamStatus {
    return this.status;
  }

  /** The upstream's own tools, unfiltered and with its own names. */
  listTools(): Tool[] {
    return this.tools;
  }

  /** Everything the upstream offers, as last listed. */
  offerings(): { tools: Tool[]; prompts: Prompt[]; resources: Resource[]; resourceTemplates: ResourceTemplateType[] } {
    return { tools: this.tools, prompts: this.prompts, resources: this.resources, resourceTemplates: this.resourceTemplates };
  }

  getClient(): Client | undefined {
    return this.status.state === 'connected' ? this.client : undefined;
  }

  /**
   * The SDK client for a call, restarting a parked (idle) stdio server first; undefined when
   * the upstream is not available. Every call goes through here, which also marks it used.
   */
  async ready(): Promise<Client | undefined> {
    this.lastUsed = Date.now();
    if (this.status.state === 'idle') {
      this.waking ??= this.connect().finally(() => (this.waking = undefined));
      await this.waking;
    }
    return this.getClient();
  }

  /**
   * Calls a tool on the upstream (its own name). 2025-era HTTP upstreams take the pooled
   * {@link HttpForwarder}; everything else the SDK client. Progress notifications arrive as
   * their wire params, with the caller's own `progressToken` (passed in `_meta`).
   */
  async callTool(
    params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> },
    options: { signal?: AbortSignal; onProgress?: (params: Record<string, unknown>) => void },
  ): Promise<CallToolResult> {
    const timeoutMs = this.server.timeoutMs;
    const forwarder = this.status.state === 'connected' ? this.forwarder : undefined;
    if (forwarder) {
      try {
        return (await forwarder.request('tools/call', params, { signal: options.signal, timeoutMs, onProgress: options.onProgress })) as CallToolResult;
      } catch (error) {
        if (error instanceof UpstreamSessionLostError) this.failed(error, this.generation);
        throw error;
      }
    }
    const client = await this.ready();
    if (!client) throw new Error(this.status.lastError ?? `it is ${this.status.state}`);
    const progressToken = params._meta?.progressToken;
    return (await client.callTool(
      { name: params.name, arguments: params.arguments },
      {
        signal: options.signal,
        timeout: timeoutMs,
        onprogress: progressToken === undefined || !options.onProgress ? undefined : (p) => options.onProgress!({ ...p, progressToken }),
      },
    ));
  }

  /** Connects (or reconnects). Never rejects: failures become `state: "error"` and a retry. */
  async connect(): Promise<void> {
    if (this.closed || !this.server.enabled) return;
    const generation = ++this.generation;
    const offeredBefore = this.signature();
    this.setStatus({ state: 'connecting' });
    await this.dispose();
    try {
      const transport = this.createTransport();
      const client = new Client(GATEHOUSE_CLIENT, {
        capabilities: {},
        versionNegotiation: { mode: 'auto' },
        listChanged: {
          tools: {
            onChanged: (error, tools) => {
              if (error || generation !== this.generation) return;
              this.tools = tools ?? [];
              this.setStatus({ toolCount: this.tools.length });
              this.events.onToolsChanged(this.server.name);
            },
          },
          prompts: {
            onChanged: (error, prompts) => {
              if (error || generation !== this.generation) return;
              this.prompts = prompts ?? [];
              this.events.onToolsChanged(this.server.name);
            },
          },
          resources: {
            onChanged: (error, resources) => {
              if (error || generation !== this.generation) return;
              this.resources = resources ?? [];
              this.events.onToolsChanged(this.server.name);
            },
          },
        },
      });
      this.client = client;
      this.transport = transport;
      transport.onclose = () => {
        if (generation === this.generation && !this.closed) this.failed(new Error('connection closed'), generation);
      };
      // Starting a server (npx downloads, JVM start-up) can take far longer than a call may:
      // the handshake and first listing get at least HANDSHAKE_TIMEOUT_MS.
      const timeout = { timeout: Math.max(this.server.timeoutMs, HANDSHAKE_TIMEOUT_MS) };
      await client.connect(transport, timeout);
      const caps = client.getServerCapabilities() ?? {};
      const [tools, prompts, resources, resourceTemplates] = await Promise.all([
        caps.tools ? client.listTools(undefined, timeout).then((r) => r.tools) : [],
        caps.prompts ? client.listPrompts(undefined, timeout).then((r) => r.prompts) : [],
        caps.resources ? client.listResources(undefined, timeout).then((r) => r.resources) : [],
        caps.resources ? client.listResourceTemplates(undefined, timeout).then((r) => r.resourceTemplates) : [],
      ]);
      if (generation !== this.generation || this.closed) return;
      const negotiated = client.getNegotiatedProtocolVersion();
      // The pooled fast path covers 2025-era sessions; modern upstreams stay on the SDK client,
      // which builds the per-request _meta envelope.
      if (transport instanceof StreamableHTTPClientTransport && negotiated && negotiated < '2026-07-28') {
        this.forwarder = new HttpForwarder(new URL(this.server.url!), this.server.headers, negotiated, transport.sessionId);
      }
      this.tools = tools;
      this.prompts = prompts;
      this.resources = resources;
      this.resourceTemplates = resourceTemplates;
      this.attempt = 0;
      this.setStatus({ state: 'connected', lastError: null, toolCount: tools.length });
      this.events.log.info({ server: this.server.name, tools: tools.length, protocolVersion: client.getNegotiatedProtocolVersion() }, 'upstream connected');
      // A restart after parking usually offers the same things: no list_changed for nothing.
      if (this.signature() !== offeredBefore) this.events.onToolsChanged(this.server.name);
      this.scheduleIdleCheck(generation);
    } catch (error) {
      this.failed(error, generation);
    }
  }

  /**
   * Replaces the values Gatehouse handed this upstream (its env and headers: tokens, often)
   * wherever they reappear in text it produced — stderr lines, error messages — before that
   * text is logged or shown in `status.lastError`. Short values are left alone (too common to mean
   * anything, and replacing them would garble the text).
   */
  private mask(text: string): string {
    let out = text;
    for (const value of [...Object.values(this.server.env), ...Object.values(this.server.headers)]) {
      if (value.length >= 8 && out.includes(value)) out = out.split(value).join('[REDACTED]');
    }
    return out;
  }

  private signature(): string {
    return JSON.stringify([this.tools, this.prompts, this.resources, this.resourceTemplates]);
  }

  /** Parks a stdio server whose process has had no call for `idleTtlMs`; its offerings stay listed. */
  private scheduleIdleCheck(generation: number): void {
    const ttl = this.events.idleTtlMs ?? 0;
    if (ttl <= 0 || this.server.transport !== 'stdio') return;
    clearTimeout(this.idleTimer);
    const wait = Math.max(50, this.lastUsed + ttl - Date.now());
    this.idleTimer = setTimeout(() => {
      if (generation !== this.generation || this.closed || this.status.state !== 'connected') return;
      if (Date.now() - this.lastUsed < ttl) return this.scheduleIdleCheck(generation);
      this.generation++; // the process exit that follows is not a failure
      this.events.log.info({ server: this.server.name, idleMs: Date.now() - this.lastUsed }, 'stopping idle stdio upstream');
      this.setStatus({ state: 'idle' });
      void this.dispose();
    }, wait);
    this.idleTimer.unref();
  }

  /** Disconnects for good (server deleted, disabled or replaced, or shutdown). */
  async close(): Promise<void> {
    this.closed = true;
    this.generation++;
    clearTimeout(this.retryTimer);
    clearTimeout(this.idleTimer);
    await this.dispose();
    if (!this.server.enabled) this.setStatus({ state: 'disabled', toolCount: 0 });
  }

  private failed(error: unknown, generation: number): void {
    // A crash is reported twice (transport close, then the pending request): count it once.
    if (generation !== this.generation || this.closed || this.failedGeneration === generation) return;
    this.failedGeneration = generation;
    const message = this.mask(describe(error));
    const hadTools = this.tools.length + this.prompts.length + this.resources.length + this.resourceTemplates.length > 0;
    this.tools = [];
    this.prompts = [];
    this.resources = [];
    this.resourceTemplates = [];
    this.setStatus({ state: 'error', lastError: message, toolCount: 0 });
    if (hadTools) this.events.onToolsChanged(this.server.name);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    this.events.log.warn({ server: this.server.name, error: message, retryInMs: delay }, 'upstream unavailable');
    void this.dispose();
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
    this.retryTimer.unref();
  }

  private async dispose(): Promise<void> {
    const client = this.client;
    const transport = this.transport;
    const forwarder = this.forwarder;
    this.client = undefined;
    this.transport = undefined;
    this.forwarder = undefined;
    await forwarder?.close();
    if (transport) transport.onclose = undefined;
    await client?.close().catch(() => undefined);
    await transport?.close().catch(() => undefined);
  }

  private createTransport(): Transport {
    const s = this.server;
    if (s.transport === 'stdio') {
      return new ProcessGroupStdioTransport({
        command: s.command!,
        args: s.args,
        env: s.env,
        cwd: s.cwd ?? undefined,
        onStderr: (line) => this.events.log.debug({ server: s.name, stderr: this.mask(line.slice(0, 2000)) }, 'upstream stderr'),
      });
    }
    const url = new URL(s.url!);
    const requestInit = { headers: s.headers };
    return s.transport === 'sse' ? new SSEClientTransport(url, { requestInit }) : new StreamableHTTPClientTransport(url, { requestInit });
  }

  private setStatus(patch: Partial<UpstreamStatus>): void {
    this.status = { ...this.status, ...patch, updatedAt: new Date().toISOString() };
  }
}
