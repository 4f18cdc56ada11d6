import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { backoffDelay, realTimers, type BackoffBounds, type Timers } from './backoff.js';

/** The one PostgreSQL channel every replica listens on; topics travel inside the payload. */
export const CHANGE_CHANNEL = 'gatehouse_changes';

/**
 * Delivered to every subscriber, whatever its topic, after the listening connection was lost
 * and re-established: notifications sent in between are gone, so caches must reload.
 */
export const RESYNC_TOPIC = '$resync';

/** PostgreSQL caps a NOTIFY payload at 8000 bytes; keep a margin for the envelope. */
const MAX_PAYLOAD_BYTES = 7_900;

export interface ChangeEvent<T = unknown> {
  topic: string;
  data: T;
  /** The replica that published it (see {@link PgChangeBus.instanceId}). */
  origin: string;
  /** True when this replica published it. */
  local: boolean;
}

export type ChangeHandler = (event: ChangeEvent) => void;

/**
 * A typed bus topic, declared by the module that publishes it (`users.changed` lives in
 * `users/`). `parse` checks an incoming payload (the bus carries JSON from other replicas) and
 * returns undefined for one this code cannot use: its handlers are then not called.
 */
export interface Topic<T> {
  readonly name: string;
  readonly parse: (data: unknown) => T | undefined;
}

/** Declares a topic. Without `parse`, any payload is passed through as `T`. */
export function topic<T = null>(name: string, parse: (data: unknown) => T | undefined = (d) => d as T): Topic<T> {
  return { name, parse };
}

/** Payload guard for the common `{ <field>: string, … }` shapes. */
export function stringFields<K extends string>(...fields: K[]): (data: unknown) => Record<K, string> | undefined {
  return (data) => {
    if (typeof data !== 'object' || data === null) return undefined;
    const record = data as Record<string, unknown>;
    return fields.every((f) => typeof record[f] === 'string') ? (record as Record<K, string>) : undefined;
  };
}

/**
 * Where a publish runs: anything with TypeORM's `query(sql, params)` — an `EntityManager` or
 * `QueryRunner` inside the writing transaction, so the notification is sent if and only if the
 * change commits (PostgreSQL delivers NOTIFY at commit, and drops it on rollback).
 */
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

/** Where the bus reports whether it is listening (a {@link ReadinessGate} from `readiness-gates.ts`). */
export interface BusStatusSink {
  set(state: 'ok' | 'pending' | 'error', reason?: string | null): void;
}

export interface ChangeBusOptions {
  connectionString: string;
  /** Runs `SELECT pg_notify(...)` on a pooled connection (the app's DataSource). */
  query: (sql: string, params: unknown[]) => Promise<unknown>;
  log?: { warn(msg: string): void; info?(msg: string): void; debug?(msg: string): void };
  /** Reconnect backoff bounds in ms (exponential with jitter, see {@link backoffDelay}). Default 100 … 5,000. */
  backoff?: BackoffBounds;
  /**
   * Liveness of the listening connection: every `intervalMs` a `SELECT 1` runs on it, and an
   * answer slower than `timeoutMs` (or an error) counts as a lost connection. Default 5,000 / 3,000
   * (GATEHOUSE_BUS_LIVENESS_INTERVAL / _TIMEOUT). A connection that hangs without closing (a
   * paused or partitioned server, a dropped NAT mapping) is thus noticed within
   * `intervalMs + timeoutMs`; TCP keepalive on the socket is the kernel-level backstop. A
   * (re)connect attempt — connect, `LISTEN` — is bounded by max(`timeoutMs`, 10 s), and `close()`
   * waits at most `timeoutMs` for a graceful goodbye before dropping the socket.
   */
  liveness?: { intervalMs: number; timeoutMs: number };
  /** Receives `ok` while listening, `error` (with the reason) while not. */
  status?: BusStatusSink;
  /** Timers for liveness, timeouts and backoff; tests inject manual ones. */
  timers?: Timers;
  /** Jitter source for the backoff, [0, 1). Default `Math.random`. */
  random?: () => number;
}

const DEFAULT_LIVENESS = { intervalMs: 5_000, timeoutMs: 3_000 };

/** The socket under a pg.Client; pg has no public way to drop a connection whose server stopped answering. */
function destroySocket(client: pg.Client): void {
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

/**
 * A cross-replica change bus over PostgreSQL `LISTEN/NOTIFY`: a replica that changes shared
 * state publishes a small event; every replica (itself included) receives it and drops or
 * refreshes its caches. Messages are hints, never data of record: they are lost while a
 * replica is disconnected, which is why reconnecting emits {@link RESYNC_TOPIC}.
 *
 * The listening connection is watched: a liveness query (see {@link ChangeBusOptions.liveness})
 * turns a silently dead connection into a reconnect, with jittered exponential backoff. While
 * not listening the `status` sink is `error`, so `/readyz` answers 503 for this replica: its
 * caches may be stale and it would not hear revocations.
 */
export class PgChangeBus {
  readonly instanceId = randomUUID();
  private readonly handlers = new Map<string, Set<ChangeHandler>>();
  private client: pg.Client | undefined;
  private pid: number | undefined;
  private closed = false;
  private connecting: Promise<void> | undefined;
  private retryTimer: unknown;
  private livenessTimer: unknown;
  private attempt = 0;
  private readonly timers: Timers;
  private readonly liveness: { intervalMs: number; timeoutMs: number };

  constructor(private readonly options: ChangeBusOptions) {
    this.timers = options.timers ?? realTimers;
    this.liveness = options.liveness ?? DEFAULT_LIVENESS;
    options.status?.set('pending', 'connecting');
  }

  /** Connects and starts listening; resolves once `LISTEN` is in effect. Rejects if the first connection fails. */
  start(): Promise<void> {
    this.connecting ??= this.connect();
    return this.connecting;
  }

  /**
   * Subscribes to one topic; returns the unsubscribe function. With a typed {@link Topic}, a
   * payload its `parse` refuses is dropped (logged at debug), and the handler gets `T`. The
   * {@link RESYNC_TOPIC} event (data `null`) reaches every handler whatever its topic.
   */
  subscribe<T = unknown>(topic: string | Topic<T>, handler: (event: ChangeEvent<T>) => void): () => void {
    const name = typeof topic === 'string' ? topic : topic.name;
    const wrapped: ChangeHandler =
      typeof topic === 'string'
        ? (handler as ChangeHandler)
        : (event) => {
            if (event.topic === RESYNC_TOPIC) return handler(event as ChangeEvent<T>);
            const data = topic.parse(event.data);
            if (data === undefined) {
              this.options.log?.debug?.(`change bus: ignored a "${name}" event with an unexpected payload`);
              return;
            }
            handler({ ...event, data });
          };
    let set = this.handlers.get(name);
    if (!set) this.handlers.set(name, (set = new Set()));
    set.add(wrapped);
    return () => set.delete(wrapped);
  }

  /**
   * Publishes to every replica. Pass `tx` (the writing transaction's `EntityManager` or
   * `QueryRunner`) to make the notification atomic with the change: PostgreSQL delivers it on
   * commit and drops it on rollback. Rejects if the payload exceeds what NOTIFY carries
   * (8000 bytes, PostgreSQL `NOTIFY` docs).
   */
  async publish<T>(topic: string | Topic<T>, data: T | null = null, tx?: Queryable): Promise<void> {
    const name = typeof topic === 'string' ? topic : topic.name;
    const payload = JSON.stringify({ t: name, d: data, o: this.instanceId });
    if (Buffer.byteLength(payload) > MAX_PAYLOAD_BYTES) {
      throw new Error(`change bus event "${name}" is ${Buffer.byteLength(payload)} bytes; the limit is ${MAX_PAYLOAD_BYTES}`);
    }
    if (tx) await tx.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, payload]);
    else await this.options.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, payload]);
  }

  /** True while the `LISTEN` connection is up and has passed its last liveness check. */
  get listening(): boolean {
    return this.client !== undefined;
  }

  /** `pg_backend_pid()` of the listening connection (diagnostics, tests); undefined while not listening. */
  get backendPid(): number | undefined {
    return this.client ? this.pid : undefined;
  }

  /** Stops listening and retrying. Never waits on a server that stopped answering. */
  async close(): Promise<void> {
    this.closed = true;
    this.timers.clearTimeout(this.retryTimer);
    this.timers.clearTimeout(this.livenessTimer);
    const client = this.client;
    this.client = undefined;
    if (client) await this.end(client);
  }

  /** Ends a client, gracefully if its server answers within the liveness timeout, else by dropping the socket. */
  private async end(client: pg.Client): Promise<void> {
    let timer: unknown;
    const bounded = new Promise<void>((resolve) => {
      timer = this.timers.setTimeout(() => {
        destroySocket(client);
        resolve();
      }, this.liveness.timeoutMs);
    });
    await Promise.race([client.end().catch(() => undefined), bounded]);
    this.timers.clearTimeout(timer);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.options.connectionString,
      application_name: 'gatehouse-bus',
      // Kernel-level backstop for a peer that vanished; the liveness query is the fast path.
      keepAlive: true,
      keepAliveInitialDelayMillis: this.liveness.intervalMs,
    });
    client.on('notification', (msg) => this.dispatch(msg.payload));
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client));
    try {
      await this.withTimeout(client, 'connecting', async () => {
        await client.connect();
        await client.query(`LISTEN ${CHANGE_CHANNEL}`);
        const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
        this.pid = rows[0]?.pid;
      }, Math.max(this.liveness.timeoutMs, 10_000));
    } catch (error) {
      await this.end(client);
      throw error;
    }
    if (this.closed) {
      await this.end(client);
      return;
    }
    const reconnected = this.attempt > 0;
    this.client = client;
    this.attempt = 0;
    this.options.status?.set('ok');
    this.scheduleLiveness(client);
    if (reconnected) {
      this.options.log?.info?.('change bus listening again; subscribers resync');
      this.emit({ topic: RESYNC_TOPIC, data: null, origin: this.instanceId, local: true }, true);
    }
  }

  /** Runs `work`; if it takes longer than `ms`, drops the client's socket (failing `work`) and rejects. */
  private async withTimeout(client: pg.Client, what: string, work: () => Promise<void>, ms: number): Promise<void> {
    let timedOut = false;
    const timer = this.timers.setTimeout(() => {
      timedOut = true;
      destroySocket(client);
    }, ms);
    try {
      await work();
    } catch (error) {
      throw timedOut ? new Error(`no answer from PostgreSQL within ${ms} ms while ${what}`) : error;
    } finally {
      this.timers.clearTimeout(timer);
    }
    if (timedOut) throw new Error(`no answer from PostgreSQL within ${ms} ms while ${what}`);
  }

  private scheduleLiveness(client: pg.Client): void {
    this.livenessTimer = this.timers.setTimeout(() => void this.probe(client), this.liveness.intervalMs);
  }

  /** One liveness check: `SELECT 1` on the listening connection, answered within the timeout, or the connection is lost. */
  private async probe(client: pg.Client): Promise<void> {
    if (this.client !== client || this.closed) return;
    const { timeoutMs } = this.liveness;
    const timer = this.timers.setTimeout(() => this.lost(client, new Error(`no answer to the liveness query within ${timeoutMs} ms`)), timeoutMs);
    try {
      await client.query('SELECT 1');
    } catch (error) {
      this.lost(client, error as Error);
      return;
    } finally {
      this.timers.clearTimeout(timer);
    }
    if (this.client === client && !this.closed) this.scheduleLiveness(client);
  }

  private lost(client: pg.Client, error?: Error): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.timers.clearTimeout(this.livenessTimer);
    const reason = `listening connection lost${error ? `: ${error.message}` : ''}`;
    this.options.status?.set('error', `${reason}; reconnecting`);
    this.options.log?.warn(`change bus ${reason}; reconnecting`);
    void this.end(client);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delay = backoffDelay(this.attempt++, this.options.backoff ?? { min: 100, max: 5_000 }, this.options.random);
    this.retryTimer = this.timers.setTimeout(() => {
      this.connect().catch((error: Error) => {
        this.options.status?.set('error', `reconnecting failed: ${error.message}; retrying`);
        this.options.log?.warn(`change bus reconnect failed: ${error.message}`);
        this.scheduleReconnect();
      });
    }, delay);
  }

  private dispatch(payload: string | undefined): void {
    if (!payload) return;
    let parsed: { t?: unknown; d?: unknown; o?: unknown };
    try {
      parsed = JSON.parse(payload) as typeof parsed;
    } catch {
      this.options.log?.warn('change bus: ignored a notification that is not JSON');
      return;
    }
    if (typeof parsed.t !== 'string' || typeof parsed.o !== 'string') return;
    this.emit({ topic: parsed.t, data: parsed.d ?? null, origin: parsed.o, local: parsed.o === this.instanceId });
  }

  /** Calls the topic's handlers (or, for a resync, every handler); one failing handler never stops the rest. */
  private emit(event: ChangeEvent, toAll = false): void {
    const sets = toAll ? [...this.handlers.values()] : [this.handlers.get(event.topic)].filter((s) => s !== undefined);
    for (const set of sets) {
      for (const handler of set) {
        try {
          handler(event);
        } catch (error) {
          this.options.log?.warn(`change bus handler for "${event.topic}" failed: ${(error as Error).message}`);
        }
      }
    }
  }
}
