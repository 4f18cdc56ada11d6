import { fingerprint } from '../secrets/placeholders.js';
import type { Clock, Timer } from './clock.js';
import type { UpstreamConnection } from './upstream-connection.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';

/** Every per-caller connection is in use and GATEHOUSE_POOL_MAX is reached. */
export class PoolExhaustedError extends Error {}

/** A caller's connection from the pool; call `release` once the exchange is over (idempotent). */
export interface PooledConnection {
  connection: UpstreamConnection;
  release: () => void;
}

/** Values a per-caller server was started with: its resolved `env` and `headers`. */
export interface ResolvedValues {
  env: Record<string, string>;
  headers: Record<string, string>;
  /** The secret values among them (masked at any length in what the connection reports); not part of the key. */
  secretValues?: string[];
  /** {@link fingerprint} of `env` and `headers` when the caller already has it (it is the pool key's costly part). */
  fingerprint?: string;
}

export interface ConnectionPoolOptions {
  /** Most connections alive at once, starting ones included (GATEHOUSE_POOL_MAX). */
  max: number;
  /** An unused connection is closed after this many ms (GATEHOUSE_POOL_IDLE_TTL). */
  idleTtlMs: number;
  clock: Clock;
  /** Builds (does not connect) the connection to `template` (placeholders intact) with the caller's values. */
  create: (template: UpstreamServerEntity, owner: string, resolved: ResolvedValues) => UpstreamConnection;
  /** Starts a connection (default `connection.connect()`); must not reject. */
  start?: (connection: UpstreamConnection) => Promise<void>;
}

interface PoolEntry {
  server: string;
  owner: string;
  connection: UpstreamConnection;
  /** Settles when the connection is usable (or has failed; `connect` never rejects). */
  ready: Promise<void>;
  inflight: number;
  lastUsed: number;
}

/**
 * Per-caller connections to servers configured with placeholders: one per (server, owner,
 * fingerprint of the resolved values), least recently used first. Guarantees:
 * - single-flight per key: concurrent first calls of one caller share one connection;
 * - never more than `max` connections, counting those being started; one that needs room
 *   starts only after the connection evicted for it has stopped;
 * - an entry with calls in flight is never evicted or reaped; retiring one (secret or config
 *   change) fails its in-flight calls at once, with the reason.
 */
export class ConnectionPool {
  /** Live and starting entries, least recently used first. */
  private readonly entries = new Map<string, PoolEntry>();
  /** Connections closing to make room: they still count against `max`. */
  private closing = 0;
  private reaper: Timer | undefined;
  private stopped = false;

  constructor(private readonly options: ConnectionPoolOptions) {}

  /** Connections alive or starting (what `max` bounds). */
  get size(): number {
    return this.entries.size;
  }

  /** The live or starting connections to `server` (diagnostics, tests). */
  connectionsOf(server: string): UpstreamConnection[] {
    return [...this.entries.values()].filter((e) => e.server === server).map((e) => e.connection);
  }

  /** Connections being closed right now (their processes are stopping). */
  get closingCount(): number {
    return this.closing;
  }

  /**
   * The caller's connection, started on first use and awaited until it is ready (or failed:
   * check `connection.getClient()`). Throws {@link PoolExhaustedError} when `max` is reached
   * and every connection has calls in flight.
   */
  async acquire(template: UpstreamServerEntity, owner: string, resolved: ResolvedValues): Promise<PooledConnection> {
    const server = template.name;
    if (this.stopped) throw new PoolExhaustedError('the gateway is shutting down');
    const key = `${server}\n${owner}\n${resolved.fingerprint ?? fingerprint([resolved.env, resolved.headers])}`;
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key); // most recently used last
      this.entries.set(key, entry);
    } else {
      // Decide and reserve synchronously: no await between the count and the insert.
      const room = this.size >= this.options.max ? this.evictOne() : Promise.resolve();
      const connection = this.options.create(template, owner, resolved);
      entry = { server, owner, connection, ready: room.then(() => (this.options.start ? this.options.start(connection) : connection.connect())), inflight: 0, lastUsed: this.options.clock.now() };
      this.entries.set(key, entry);
      this.armReaper();
    }
    const used = entry;
    used.inflight++;
    used.lastUsed = this.options.clock.now();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      used.inflight--;
      used.lastUsed = this.options.clock.now();
    };
    try {
      await used.ready;
    } catch (error) {
      release();
      throw error;
    }
    return { connection: used.connection, release };
  }

  /** Closes the connections of `server` (of one owner, or all); their in-flight calls fail at once with `reason`. */
  async retire(server: string, owner: string | undefined, reason: string): Promise<void> {
    const doomed: UpstreamConnection[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.server === server && (owner === undefined || entry.owner === owner)) {
        this.entries.delete(key);
        doomed.push(entry.connection);
      }
    }
    await Promise.all(doomed.map((c) => this.closeCounted(c, reason)));
  }

  /**
   * Closes every connection without calls in flight (after a `$resync`: any secret may have
   * changed meanwhile). Busy ones finish; a caller whose values changed gets a new connection
   * anyway (the key holds their fingerprint), and the old one is reaped once unused.
   */
  async retireIdle(reason: string): Promise<void> {
    const doomed: UpstreamConnection[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.inflight > 0) continue;
      this.entries.delete(key);
      doomed.push(entry.connection);
    }
    await Promise.all(doomed.map((c) => this.closeCounted(c, reason)));
  }

  /** Closes the connections unused for `idleTtlMs` (never one with calls in flight). */
  async reap(): Promise<void> {
    const now = this.options.clock.now();
    const doomed: UpstreamConnection[] = [];
    for (const [key, entry] of this.entries) {
      if (entry.inflight === 0 && now - entry.lastUsed >= this.options.idleTtlMs) {
        this.entries.delete(key);
        doomed.push(entry.connection);
      }
    }
    await Promise.all(doomed.map((c) => this.closeCounted(c, 'unused for GATEHOUSE_POOL_IDLE_TTL')));
  }

  /** Closes everything (shutdown); later acquires fail. */
  async close(reason: string): Promise<void> {
    this.stopped = true;
    this.reaper?.cancel();
    const all = [...this.entries.values()].map((e) => e.connection);
    this.entries.clear();
    await Promise.all(all.map((c) => this.closeCounted(c, reason)));
  }

  /** Picks the least recently used idle entry, removes it now, and resolves once it has closed. */
  private evictOne(): Promise<void> {
    for (const [key, entry] of this.entries) {
      if (entry.inflight > 0) continue;
      this.entries.delete(key);
      return this.closeCounted(entry.connection, 'evicted to make room (GATEHOUSE_POOL_MAX)');
    }
    throw new PoolExhaustedError(`all ${this.options.max} per-user upstream connections of this replica are busy (GATEHOUSE_POOL_MAX); try again shortly`);
  }

  private async closeCounted(connection: UpstreamConnection, reason: string): Promise<void> {
    this.closing++;
    try {
      await connection.close(reason);
    } finally {
      this.closing--;
    }
  }

  private armReaper(): void {
    if (this.reaper || this.stopped) return;
    const every = Math.min(30_000, Math.max(500, this.options.idleTtlMs / 2));
    this.reaper = this.options.clock.setTimer(() => {
      this.reaper = undefined;
      void this.reap().finally(() => {
        if (this.entries.size > 0) this.armReaper();
      });
    }, every);
  }
}
