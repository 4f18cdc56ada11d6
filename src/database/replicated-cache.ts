import { LRUCache } from 'lru-cache';
import { RESYNC_TOPIC, type ChangeEvent, type Topic } from './change-bus.js';

/** The part of the change bus a cache needs (the app's `ChangeBusService`, or a fake in tests). */
export interface CacheBus {
  subscribe<T>(topic: Topic<T> | string, handler: (event: ChangeEvent<T>) => void): () => void;
}

/** What an event on a topic invalidates: keys, entries matching a predicate, or everything. */
export type Invalidation<K, V> = K | K[] | { where: (key: K, value: V) => boolean } | 'all' | undefined;

export interface ReplicatedCacheOptions<K extends string, V> {
  /** For error messages and metrics, e.g. `api-keys`. */
  name: string;
  /** Entries kept (least recently used evicted). */
  max: number;
  /**
   * Upper bound (ms) on how long an entry is trusted without a bus event: a backstop for events
   * lost in ways the bus cannot detect. 0 = until invalidated.
   */
  ttlMs: number;
  /** Reads the value of `key` from the database. May throw (the error reaches the caller, nothing is cached). */
  load: (key: K, signal: AbortSignal) => Promise<V>;
  /** Per-entry TTL (ms) from the loaded value, e.g. a token's remaining life; `undefined`: `ttlMs`. */
  ttlOf?: (value: V, key: K) => number | undefined;
  /** Clock for TTLs (lru-cache's `perf`); tests pass a fake. Default `performance`. */
  clock?: { now(): number };
}

/** A cached `undefined`/`null` must stay distinguishable from "not cached": values travel boxed. */
interface Box<V> {
  value: V;
}

const MAX_RETRIES = 8;

/**
 * A per-replica cache of database state, invalidated through the change bus — the one
 * primitive every module uses for what it caches (users, API keys, token principals, secrets,
 * sessions). Built on `lru-cache` (`max`, `ttl`, `fetchMethod` single-flight: concurrent misses
 * of one key share one load).
 *
 * The guarantee it adds: **a load that started before an invalidation never stores (or returns)
 * its result after that invalidation.** Every invalidation bumps a counter — per key, and one
 * global counter for predicate and full invalidations — and a load whose counters moved while
 * it ran is discarded and retried, so a reader always observes a value read after the last
 * invalidation it could have seen. (Without this, a read of the old row that is slow to return
 * re-caches the old value after the change's notification has already been handled, and it
 * stays until the TTL: the stale-forever bug this replaces.)
 *
 * Invalidations come from bus topics ({@link invalidateOn}) and local calls; the bus's
 * `$resync` (after a lost listening connection) clears everything.
 */
export class ReplicatedCache<K extends string, V> {
  private readonly lru: LRUCache<K, Box<V>>;
  private readonly keyVersions = new Map<K, number>();
  private globalVersion = 0;
  /** Keys with a load in progress, so predicate invalidations can reach them. */
  private readonly loading = new Map<K, number>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly options: ReplicatedCacheOptions<K, V>,
    private readonly bus?: CacheBus,
  ) {
    this.lru = new LRUCache<K, Box<V>>({
      max: options.max,
      ...(options.ttlMs > 0 ? { ttl: options.ttlMs, ttlAutopurge: false } : {}),
      ...(options.clock ? { perf: options.clock, ttlResolution: 0 } : {}),
      fetchMethod: (key, _stale, { signal, options: fetchOptions }) => this.fetch(key, signal, fetchOptions),
    });
    if (bus) this.unsubscribe.push(bus.subscribe(RESYNC_TOPIC, () => this.clear()));
  }

  /**
   * Subscribes to `topic`: each event invalidates what `select` returns for its payload. For the
   * `$resync` event every cache is cleared anyway, so `select` is not called for it.
   */
  invalidateOn<T>(topic: Topic<T>, select: (data: T, event: ChangeEvent<T>) => Invalidation<K, V>): this {
    if (!this.bus) throw new Error(`cache ${this.options.name}: no bus to subscribe to`);
    this.unsubscribe.push(
      this.bus.subscribe(topic, (event) => {
        if (event.topic === RESYNC_TOPIC) return;
        this.apply(select(event.data, event));
      }),
    );
    return this;
  }

  /**
   * The value for `key`: cached, or loaded once for all concurrent callers. Never a value read
   * before an invalidation of `key` that happened before this call returned. Throws what
   * `load` throws.
   */
  async get(key: K): Promise<V> {
    for (let attempt = 0; attempt < MAX_RETRIES; attempt++) {
      const before = this.versionOf(key);
      let box: Box<V> | undefined;
      try {
        box = await this.lru.fetch(key);
      } catch (error) {
        // A load aborted by an invalidation rejects; anything else is the loader's own error.
        if (this.versionOf(key) === before) throw error;
        continue;
      }
      if (box !== undefined && this.versionOf(key) === before) return box.value;
    }
    // Invalidated on every attempt (a write storm on this key): read through, uncached.
    return this.options.load(key, new AbortController().signal);
  }

  /** The cached value, if any, without loading. */
  peek(key: K): V | undefined {
    return this.lru.get(key)?.value;
  }

  /** Stores a value just written by this replica (it is the newest there is). */
  set(key: K, value: V): void {
    this.bump(key);
    const ttl = this.ttl(value, key);
    this.lru.set(key, { value }, ttl === undefined ? undefined : { ttl });
  }

  /** Drops `key` (and discards any load of it in progress). */
  invalidate(key: K): void {
    this.bump(key);
    this.lru.delete(key);
  }

  /** Drops every entry `match` selects, and discards every load in progress (its value is not known yet). */
  invalidateWhere(match: (key: K, value: V) => boolean): void {
    this.globalVersion++;
    for (const [key, box] of this.lru.entries()) if (match(key, box.value)) this.lru.delete(key);
    for (const key of [...this.loading.keys()]) this.lru.delete(key);
  }

  /** Drops everything (bus resync, shutdown). */
  clear(): void {
    this.globalVersion++;
    this.keyVersions.clear();
    this.lru.clear();
  }

  /** Entries currently cached (for tests and metrics). */
  get size(): number {
    return this.lru.size;
  }

  /** Stops listening to the bus and drops everything. */
  dispose(): void {
    for (const off of this.unsubscribe.splice(0)) off();
    this.clear();
  }

  private apply(what: Invalidation<K, V>): void {
    if (what === undefined) return;
    if (what === 'all') this.clear();
    else if (Array.isArray(what)) for (const key of what) this.invalidate(key);
    else if (typeof what === 'object') this.invalidateWhere(what.where);
    else this.invalidate(what);
  }

  private async fetch(key: K, signal: AbortSignal, fetchOptions: { ttl?: number }): Promise<Box<V> | undefined> {
    const before = this.versionOf(key);
    this.loading.set(key, (this.loading.get(key) ?? 0) + 1);
    try {
      const value = await this.options.load(key, signal);
      // Invalidated meanwhile: store nothing (lru-cache deletes the key on undefined).
      if (signal.aborted || this.versionOf(key) !== before) return undefined;
      const ttl = this.ttl(value, key);
      if (ttl !== undefined && ttl <= 0) return undefined;
      // lru-cache reads a ttl the fetchMethod sets on its options when it stores the result.
      if (ttl !== undefined) fetchOptions.ttl = ttl;
      return { value };
    } finally {
      const n = (this.loading.get(key) ?? 1) - 1;
      if (n <= 0) this.loading.delete(key);
      else this.loading.set(key, n);
    }
  }

  private ttl(value: V, key: K): number | undefined {
    const own = this.options.ttlOf?.(value, key);
    if (own === undefined) return undefined;
    return this.options.ttlMs > 0 ? Math.min(own, this.options.ttlMs) : own;
  }

  private versionOf(key: K): string {
    return `${this.globalVersion}:${this.keyVersions.get(key) ?? 0}`;
  }

  private bump(key: K): void {
    this.keyVersions.set(key, (this.keyVersions.get(key) ?? 0) + 1);
    // Bounded: forget versions of keys no longer cached or loading (a fresh 0 is safe for them,
    // since no load of theirs is in flight to compare against).
    if (this.keyVersions.size > this.options.max * 2) {
      for (const k of this.keyVersions.keys()) if (!this.lru.has(k) && !this.loading.has(k) && this.lru.peek(k) === undefined) this.keyVersions.delete(k);
    }
  }
}
