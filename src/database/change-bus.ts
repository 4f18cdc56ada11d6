import { randomUUID } from 'node:crypto';
import pg from 'pg';

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

export interface ChangeBusOptions {
  connectionString: string;
  /** Runs `SELECT pg_notify(...)` on a pooled connection (the app's DataSource). */
  query: (sql: string, params: unknown[]) => Promise<unknown>;
  log?: { warn(msg: string): void; debug?(msg: string): void };
  /** Reconnect backoff bounds in ms. */
  backoff?: { min: number; max: number };
}

/**
 * A cross-replica change bus over PostgreSQL `LISTEN/NOTIFY`: a replica that changes shared
 * state publishes a small event; every replica (itself included) receives it and drops or
 * refreshes its caches. Messages are hints, never data of record: they are lost while a
 * replica is disconnected, which is why reconnecting emits {@link RESYNC_TOPIC}.
 */
export class PgChangeBus {
  readonly instanceId = randomUUID();
  private readonly handlers = new Map<string, Set<ChangeHandler>>();
  private client: pg.Client | undefined;
  private closed = false;
  private connecting: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private attempt = 0;

  constructor(private readonly options: ChangeBusOptions) {}

  /** Connects and starts listening; resolves once `LISTEN` is in effect. */
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

  get listening(): boolean {
    return this.client !== undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private async connect(): Promise<void> {
    const client = new pg.Client({ connectionString: this.options.connectionString, application_name: 'gatehouse-bus' });
    client.on('notification', (msg) => this.dispatch(msg.payload));
    client.on('error', (error) => this.lost(client, error));
    client.on('end', () => this.lost(client));
    await client.connect();
    await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    if (this.closed) {
      await client.end();
      return;
    }
    const reconnected = this.attempt > 0;
    this.client = client;
    this.attempt = 0;
    if (reconnected) this.emit({ topic: RESYNC_TOPIC, data: null, origin: this.instanceId, local: true }, true);
  }

  private lost(client: pg.Client, error?: Error): void {
    if (this.client !== client || this.closed) return;
    this.client = undefined;
    this.options.log?.warn(`change bus connection lost${error ? `: ${error.message}` : ''}; reconnecting`);
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const { min, max } = this.options.backoff ?? { min: 100, max: 5_000 };
    const delay = Math.min(max, min * 2 ** this.attempt++);
    this.retryTimer = setTimeout(() => {
      this.connect().catch((error: Error) => {
        this.options.log?.warn(`change bus reconnect failed: ${error.message}`);
        this.scheduleReconnect();
      });
    }, delay);
    this.retryTimer.unref();
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
