import { hash as digest, randomBytes } from 'node:crypto';
import { Inject, Injectable, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { LRUCache } from 'lru-cache';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, IsNull, Repository } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { withAdvisoryLock } from '../database/advisory-lock.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { stringFields, topic, type Queryable } from '../database/change-bus.js';
import { ReplicatedCache } from '../database/replicated-cache.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { storedCapabilities, storedClientInfo, storedProtocolVersion } from './client-info.js';
import { McpSessionEntity } from './mcp-session.entity.js';

/** Bus topic: `{ id }` (hashed) of a session that was closed; every replica drops it. */
export const SESSION_CLOSED = topic<{ id: string }>('sessions.closed', stringFields('id'));

/** Wall clock (ms since the epoch) the sessions service reads; tests provide a fake under {@link SESSION_CLOCK}. */
export interface SessionClock {
  now(): number;
}

/** Injection token for the {@link SessionClock} (default `Date.now`). */
export const SESSION_CLOCK = Symbol('SESSION_CLOCK');

/** Sessions cached per replica (least recently used evicted; a miss costs one indexed read). */
const CACHE_MAX = 10_000;

/**
 * How often (ms) a session's `last_seen_at`/`expires_at` are written at most: once a minute in
 * steady state, but at least four times per timeout, so sliding expiry works for any
 * HTTP_SESSION_TIMEOUT (a session used more often than its timeout never expires).
 */
export function touchIntervalMs(sessionTimeoutMs: number): number {
  return Math.max(1, Math.min(60_000, Math.floor(sessionTimeoutMs / 4)));
}

export interface SessionInit {
  principal: string;
  endpoint: string;
  protocolVersion: string;
  clientInfo: Record<string, unknown>;
  capabilities: Record<string, unknown>;
  /**
   * Opened without credentials, or by the one anonymous principal of `MCP_AUTH_STRATEGY=none`:
   * capped per {@link clientAddress} (HTTP_MAX_SESSIONS_PER_ADDRESS) instead of per principal,
   * since every such client is "the same principal". Absent: decided by `principal` (pending).
   */
  withoutCredentials?: boolean;
  /** The client's address (`request.ip`, after HTTP_TRUST_PROXY), for the per-address cap. */
  clientAddress?: string;
}

/** An open session as admins see it (`GET /api/v1/sessions`): never the session token. */
export interface SessionView {
  /** SHA-256 (hex) of the session token: names the session, cannot be used as one. */
  id: string;
  principal: string;
  endpoint: string;
  protocolVersion: string;
  clientName: string | null;
  clientVersion: string | null;
  clientAddress: string | null;
  createdAt: string;
  lastSeenAt: string;
  expiresAt: string;
}

export interface LiveSession {
  id: string;
  principal: string;
  endpoint: string;
  protocolVersion: string;
  /** The client's capabilities as stored at `initialize` (what server-to-client requests it answers). */
  capabilities?: Record<string, unknown>;
  /** When the replica last wrote last_seen_at / expires_at. */
  touchedAt: number;
  expiresAt: number;
}

/** Principal of a session opened without credentials, until someone authenticates on it. */
export const PENDING_PREFIX = 'pending:';
/**
 * The principal every such session is opened under: one value, so they are counted (and
 * capped) together — otherwise each anonymous `initialize` would be a principal of its own and
 * nothing would bound how many rows unauthenticated clients can create.
 */
export const PENDING_PRINCIPAL = PENDING_PREFIX;

/**
 * `initialize` refused: the principal (or, without credentials, the client address) already has
 * its cap of open sessions and none was idle long enough to reclaim. `retryAfterMs`: when the
 * oldest of them becomes reclaimable or expires, whichever is first.
 */
export class TooManySessionsError extends Error {
  constructor(
    message: string,
    readonly retryAfterMs: number,
  ) {
    super(message);
  }
}

/** SHA-256 (hex) of a session token: the session's id. One-shot `crypto.hash` (no Hash object per call); the same digest as `createHash('sha256').update(token).digest('hex')`. */
const hash = (token: string) => digest('sha256', token, 'hex');

/** Presented tokens whose id (hash) is remembered ({@link SessionsService}'s token memo): as many as sessions cached. */
const TOKENS_MAX = CACHE_MAX;

/**
 * How long an unused token stays in the token memo, in ms (as the API-key memo's 60 s): a
 * steady client keeps its entry, an idle session's token leaves memory at the next sweep after this.
 */
export const TOKEN_MEMO_IDLE_MS = 60_000;

/**
 * Legacy (2025-era) MCP sessions, kept in PostgreSQL so any replica serves any session. Each
 * replica caches the sessions it has seen ({@link ReplicatedCache}, entries trusted for one touch
 * interval); a close on any replica is published on the change bus inside the closing
 * transaction. The session id handed to the client is 256 random bits; only its hash is stored.
 *
 * Expiry is decided by the row, never by a replica's copy: closing an expired session is one
 * conditional `UPDATE … WHERE expires_at <= now`, so a session another replica has just
 * extended stays open. The per-principal cap (HTTP_MAX_CONCURRENT_SESSIONS) is checked and the
 * row inserted under a transaction-scoped advisory lock on the principal, so concurrent
 * `initialize` requests on any replicas cannot overshoot it.
 */
@Injectable()
export class SessionsService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly cache: ReplicatedCache<string, LiveSession | null>;
  private readonly closeListeners = new Set<(id: string) => void>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: (() => void)[] = [];
  private readonly clock: SessionClock;
  private readonly touchEveryMs: number;
  /**
   * The id (SHA-256) of the tokens of recently used open sessions, by the presented token, so a
   * client sending the same `Mcp-Session-Id` on every request costs a map read instead of a
   * SHA-256. It maps a token to its hash only — a pure function of the token —, never to a
   * verdict: whether the session is open, unexpired, on this endpoint and whose it is are read
   * from the session cache on every request, as without it. Only tokens that named an open
   * session enter it (never a guessed or mistyped string); an entry leaves when its session
   * ends on any replica ({@link forget}), at the LRU bound ({@link TOKENS_MAX}), when unused for
   * {@link TOKEN_MEMO_IDLE_MS} ({@link purgeIdleTokens}, run with every sweep) and at shutdown.
   * Never serialized, logged or exposed. It holds tokens of sessions used in the last minute or
   * so — live credentials, which otherwise stay in the process only while their requests run
   * (hence the idle bound: an idle session's token does not sit in a heap dump); the map compares
   * strings only on an equal (process-seeded) V8 string hash, so a miss's timing reveals nothing
   * about the tokens in it (the reasoning of the API-key memo, docs/auth.md).
   */
  private readonly tokenIds: LRUCache<string, string>;
  /** The reverse of {@link tokenIds} (session id → token), so a session's end drops its token. */
  private readonly tokenOf = new Map<string, string>();

  constructor(
    @InjectRepository(McpSessionEntity) private readonly repo: Repository<McpSessionEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    private readonly logger: PinoLogger,
    @Optional() @Inject(SESSION_CLOCK) clock?: SessionClock,
  ) {
    logger.setContext('Sessions');
    this.clock = clock ?? { now: () => Date.now() };
    this.touchEveryMs = touchIntervalMs(config.mcp.sessionTimeoutMs);
    this.tokenIds = new LRUCache<string, string>({
      max: TOKENS_MAX,
      ttl: TOKEN_MEMO_IDLE_MS,
      updateAgeOnGet: true,
      // The session clock (tests move it); read on every use, not cached behind a timer.
      perf: { now: () => this.clock.now() },
      ttlResolution: 0,
      dispose: (id) => this.tokenOf.delete(id),
    });
    // `null`: no open session with this id (unknown or closed) — cached too, closes are final.
    // The bus's $resync clears it (closes may have been missed while disconnected).
    this.cache = new ReplicatedCache<string, LiveSession | null>(
      { name: 'sessions', max: CACHE_MAX, ttlMs: this.touchEveryMs, load: (id) => this.load(id), clock: this.clock },
      bus,
    );
  }

  onApplicationBootstrap(): void {
    this.unsubscribe.push(this.bus.subscribe(SESSION_CLOSED, (event) => this.forget(event.data.id)));
    void this.schema.whenMigrated().then(() => this.scheduleSweep());
  }

  beforeApplicationShutdown(): void {
    clearTimeout(this.sweepTimer);
    for (const off of this.unsubscribe.splice(0)) off();
    this.cache.dispose();
    this.tokenIds.clear();
  }

  /** Called with the (hashed) id of every session that ends, on whichever replica ended it. */
  onClosed(listener: (id: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Opens a session; returns the token for the `Mcp-Session-Id` header. Of `clientInfo`,
   * `capabilities` and `protocolVersion` only known fields, cleaned and bounded, are stored
   * (`client-info.ts`).
   *
   * Caps: a real principal has at most HTTP_MAX_CONCURRENT_SESSIONS open sessions; sessions
   * opened without credentials (or by the anonymous `none` principal) at most
   * HTTP_MAX_SESSIONS_PER_ADDRESS per client address. At the cap, the group's sessions idle for
   * HTTP_SESSION_RECLAIM_IDLE (plus one touch interval, the precision of `last_seen_at`) are
   * closed oldest-first to make room — clients that never send DELETE (Inspector CLI,
   * mcporter) no longer lock everyone out until their sessions expire. Counting, reclaiming
   * and inserting run in one transaction under an advisory lock on the group, so concurrent
   * `initialize`s on any replicas cannot overshoot. Throws {@link TooManySessionsError} (with
   * `retryAfterMs`) when nothing can be reclaimed.
   */
  async create(init: SessionInit): Promise<{ token: string; session: LiveSession }> {
    const byAddress = init.withoutCredentials ?? init.principal === PENDING_PRINCIPAL;
    const address = byAddress ? (init.clientAddress ?? 'unknown') : null;
    const limit = byAddress ? this.config.mcp.maxSessionsPerAddress : this.config.mcp.maxSessionsPerPrincipal;
    const group = byAddress ? { column: 'client_address', value: address! } : { column: 'principal', value: init.principal };
    const token = randomBytes(32).toString('base64url');
    const id = hash(token);
    const now = this.clock.now();
    const expiresAt = now + this.config.mcp.sessionTimeoutMs;
    // Informational, client-chosen: stored cleaned and bounded (see client-info.ts).
    const protocolVersion = storedProtocolVersion(init.protocolVersion);
    const reclaimIdleMs = this.config.mcp.sessionReclaimIdleMs;
    // Used within HTTP_SESSION_RECLAIM_IDLE ⇒ last_seen_at is newer than this (it lags use by under one touch interval).
    const idleBefore = now - reclaimIdleMs - this.touchEveryMs;
    const reclaimed = await this.dataSource.transaction(async (em) => {
      // Count and insert as one step per group, across replicas; released at commit.
      await em.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`gatehouse:session-cap:${group.column}:${group.value}`]);
      // Counted in the database: reading the group's rows would cost every initialize one row
      // per open session (1,000 idle sessions of one principal: ~700 KB of garbage per new one).
      const live = `${group.column} = $1 AND closed_at IS NULL AND expires_at > $2`;
      const [{ open }] = await em.query<[{ open: number }]>(`SELECT count(*)::int AS open FROM mcp_sessions WHERE ${live}`, [group.value, new Date(now)]);
      let closed: string[] = [];
      if (open >= limit) {
        const excess = open - limit + 1;
        // The least recently used sessions idle for HTTP_SESSION_RECLAIM_IDLE, at most `excess`.
        const idle =
          reclaimIdleMs > 0
            ? (
                await em.query<{ id: string }[]>(`SELECT id FROM mcp_sessions WHERE ${live} AND last_seen_at <= $3 ORDER BY last_seen_at, id LIMIT $4`, [
                  group.value,
                  new Date(now),
                  new Date(idleBefore),
                  excess,
                ])
              ).map((r) => r.id)
            : [];
        if (idle.length < excess) {
          // Every idle session was found, so the rest are busy: the wait is until the first of
          // them expires or becomes reclaimable.
          const [busy] = await em.query<[{ expires: Date | null; seen: Date | null }]>(
            `SELECT min(expires_at) AS expires, min(last_seen_at) AS seen FROM mcp_sessions WHERE ${live}${reclaimIdleMs > 0 ? ' AND last_seen_at > $3' : ''}`,
            reclaimIdleMs > 0 ? [group.value, new Date(now), new Date(idleBefore)] : [group.value, new Date(now)],
          );
          // (None left only if another replica closed them meanwhile: then retry at once.)
          const waits = [busy.expires ? busy.expires.getTime() - now : 0];
          if (reclaimIdleMs > 0 && busy.seen) waits.push(busy.seen.getTime() - idleBefore);
          const retryAfterMs = Math.max(1_000, Math.min(...waits));
          throw new TooManySessionsError(
            byAddress
              ? `too many MCP sessions opened without credentials from this address (${limit}, HTTP_MAX_SESSIONS_PER_ADDRESS), none idle long enough to reclaim (HTTP_SESSION_RECLAIM_IDLE); send credentials with initialize, end a session with DELETE, or retry later`
              : `too many open MCP sessions for this principal (${limit}, HTTP_MAX_CONCURRENT_SESSIONS), none idle long enough to reclaim (HTTP_SESSION_RECLAIM_IDLE); end one with DELETE or retry later`,
            retryAfterMs,
          );
        }
        const [rows] = await em.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = $2 WHERE id = ANY($1) AND closed_at IS NULL RETURNING id', [
          idle,
          new Date(now),
        ]);
        closed = rows.map((r) => r.id);
        await this.publishClosed(closed, em);
      }
      await em.query(
        `INSERT INTO mcp_sessions (id, principal, endpoint, protocol_version, client_info, capabilities, last_seen_at, expires_at, client_address)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
        [id, init.principal, init.endpoint, protocolVersion, storedClientInfo(init.clientInfo), storedCapabilities(init.capabilities), new Date(now), new Date(expiresAt), address],
      );
      return closed;
    });
    for (const closedId of reclaimed) this.forget(closedId);
    if (reclaimed.length > 0) this.logger.info({ sessions: reclaimed.length, group: group.column }, 'reclaimed idle MCP sessions to open a new one');
    const session: LiveSession = { id, principal: init.principal, endpoint: init.endpoint, protocolVersion, capabilities: storedCapabilities(init.capabilities), touchedAt: now, expiresAt };
    this.cache.set(id, session);
    this.rememberToken(token, id);
    return { token, session };
  }

  /**
   * Open sessions, least recently used first, for the admin API: optionally of one principal;
   * `limit` 1–500, `offset` ≥ 0. Never returns session tokens (only their hashes).
   */
  async list(filter: { principal?: string; limit: number; offset: number }): Promise<{ items: SessionView[]; total: number }> {
    const now = new Date(this.clock.now());
    const where = filter.principal === undefined ? '' : 'AND principal = $2';
    const params: unknown[] = filter.principal === undefined ? [now] : [now, filter.principal];
    const [{ total }] = await this.repo.query<[{ total: number }]>(`SELECT count(*)::int AS total FROM mcp_sessions WHERE closed_at IS NULL AND expires_at > $1 ${where}`, params);
    const rows = await this.repo.query<
      { id: string; principal: string; endpoint: string; protocol_version: string; client_info: Record<string, unknown>; client_address: string | null; created_at: Date; last_seen_at: Date; expires_at: Date }[]
    >(
      `SELECT id, principal, endpoint, protocol_version, client_info, client_address, created_at, last_seen_at, expires_at FROM mcp_sessions
        WHERE closed_at IS NULL AND expires_at > $1 ${where} ORDER BY last_seen_at, id LIMIT ${filter.limit} OFFSET ${filter.offset}`,
      params,
    );
    const str = (v: unknown) => (typeof v === 'string' ? v : null);
    return {
      total,
      items: rows.map((r) => ({
        id: r.id,
        principal: r.principal,
        endpoint: r.endpoint,
        protocolVersion: r.protocol_version,
        clientName: str(r.client_info?.name),
        clientVersion: str(r.client_info?.version),
        clientAddress: r.client_address,
        createdAt: r.created_at.toISOString(),
        lastSeenAt: r.last_seen_at.toISOString(),
        expiresAt: r.expires_at.toISOString(),
      })),
    };
  }

  /** Ends the open session whose hashed id is `id`, on every replica; false when there is none. */
  async closeById(id: string): Promise<boolean> {
    const ids = await this.dataSource.transaction(async (em) => {
      const [rows] = await em.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL RETURNING id', [
        id,
        new Date(this.clock.now()),
      ]);
      await this.publishClosed(rows.map((r) => r.id), em);
      return rows.map((r) => r.id);
    });
    for (const closed of ids) this.forget(closed);
    return ids.length > 0;
  }

  /**
   * The open session for `token` on `endpoint`, or undefined (unknown, closed, expired, or
   * opened on another endpoint: all answered alike, so the answer reveals nothing). Extends the
   * session's expiry, writing at most once per {@link touchIntervalMs}.
   */
  async resolve(token: string, endpoint: string): Promise<LiveSession | undefined> {
    if (token.length === 0 || token.length > 200) return undefined;
    const id = this.idOf(token);
    // Hot path: a cached entry is read synchronously; a miss loads once for all callers.
    let session = this.cache.peek(id);
    if (session === undefined) session = await this.cache.get(id);
    if (!session) return undefined;
    this.rememberToken(token, id);
    if (session.endpoint !== endpoint) return undefined;
    const now = this.clock.now();
    if (session.expiresAt <= now) {
      // This copy says expired; the row decides (another replica may have extended it).
      session = (await this.expireOrReread(id, now)) ?? null;
      if (!session) return undefined;
    }
    if (now - session.touchedAt >= this.touchEveryMs && !(await this.touch(session, now))) return undefined;
    return session;
  }

  /**
   * What {@link resolve} would return, when this replica can tell without I/O: the cached
   * session for `token` on `endpoint`, open, unexpired and not due for a touch. Undefined
   * otherwise — not necessarily "no session": then ask {@link resolve}, which loads, expires,
   * touches and answers unknown, closed and foreign ids. Synchronous, so the steady-state
   * request of a session costs no promise here.
   */
  cached(token: string, endpoint: string): LiveSession | undefined {
    if (token.length === 0 || token.length > 200) return undefined;
    const id = this.idOf(token);
    const session = this.cache.peek(id);
    if (!session) return undefined;
    this.rememberToken(token, id);
    if (session.endpoint !== endpoint) return undefined;
    const now = this.clock.now();
    return session.expiresAt > now && now - session.touchedAt < this.touchEveryMs ? session : undefined;
  }

  /**
   * Activity without a request: a replica holding a notification stream of session `id` calls
   * this periodically, so a session whose client only listens is neither expired nor taken for
   * idle (and reclaimed) while its stream is open. Writes at most once per touch interval.
   * Resolves false when the session is no longer open (closed or expired anywhere).
   */
  async heartbeat(id: string): Promise<boolean> {
    const session = this.cache.peek(id) ?? (await this.cache.get(id));
    if (!session) return false;
    const now = this.clock.now();
    if (now - session.touchedAt < this.touchEveryMs && session.expiresAt > now) return true;
    return this.touch(session, now);
  }

  /**
   * Binds a session opened without credentials (`MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=false`)
   * to the first principal that authenticates on it. Returns false when another principal
   * got there first (on any replica): the caller then answers as for an unknown session.
   */
  async bind(session: LiveSession, principal: string): Promise<boolean> {
    if (!session.principal.startsWith(PENDING_PREFIX)) return session.principal === principal;
    const result = await this.repo.query<[unknown[], number]>('UPDATE mcp_sessions SET principal = $1, client_address = NULL WHERE id = $2 AND principal = $3 AND closed_at IS NULL', [
      principal,
      session.id,
      session.principal,
    ]);
    if (result[1] === 1) {
      session.principal = principal;
      return true;
    }
    // Bound elsewhere meanwhile: re-read, then compare.
    this.cache.invalidate(session.id);
    const fresh = await this.cache.get(session.id);
    if (fresh) session.principal = fresh.principal;
    return fresh?.principal === principal;
  }

  /** Ends every open session of these principals, on every replica (key revoked, user disabled). */
  async closeForPrincipals(principals: string[]): Promise<number> {
    if (principals.length === 0) return 0;
    const ids = await this.dataSource.transaction(async (em) => {
      const [rows] = await em.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = now() WHERE principal = ANY($1) AND closed_at IS NULL RETURNING id', [principals]);
      await this.publishClosed(rows.map((r) => r.id), em);
      return rows.map((r) => r.id);
    });
    for (const id of ids) this.forget(id);
    return ids.length;
  }

  /** Ends the session on every replica. */
  async close(session: LiveSession): Promise<void> {
    await this.dataSource.transaction(async (em) => {
      const [rows] = await em.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL RETURNING id', [
        session.id,
        new Date(this.clock.now()),
      ]);
      await this.publishClosed(rows.map((r) => r.id), em);
    });
    this.forget(session.id);
  }

  /** Closes expired sessions and deletes long-closed rows, on one replica at a time. */
  async sweep(): Promise<number> {
    return withAdvisoryLock(this.dataSource, 'gatehouse:session-sweep', async (qr) => {
      await qr.startTransaction();
      try {
        const [rows] = (await qr.query('UPDATE mcp_sessions SET closed_at = now() WHERE closed_at IS NULL AND expires_at < now() RETURNING id')) as [{ id: string }[], number];
        await qr.query("DELETE FROM mcp_sessions WHERE closed_at < now() - interval '1 day'");
        await this.publishClosed(rows.map((r) => r.id), qr);
        await qr.commitTransaction();
        return rows.length;
      } catch (error) {
        await qr.rollbackTransaction();
        throw error;
      }
    });
  }

  /** Drops the token memo's entries unused for {@link TOKEN_MEMO_IDLE_MS} (lru-cache expires them lazily otherwise). */
  purgeIdleTokens(): void {
    this.tokenIds.purgeStale();
  }

  private scheduleSweep(): void {
    this.sweepTimer = setTimeout(() => {
      this.purgeIdleTokens();
      this.sweep()
        .then((n) => n > 0 && this.logger.info({ sessions: n }, 'closed idle MCP sessions'))
        .catch((error: unknown) => this.logger.warn({ err: error }, 'session sweep failed'))
        .finally(() => this.scheduleSweep());
    }, this.config.mcp.sessionSweepIntervalMs);
    this.sweepTimer.unref();
  }

  /** The open session `id` as stored, or null. */
  private async load(id: string): Promise<LiveSession | null> {
    const row = await this.repo.findOneBy({ id, closedAt: IsNull() });
    if (!row) return null;
    return {
      id,
      principal: row.principal,
      endpoint: row.endpoint,
      protocolVersion: row.protocolVersion,
      capabilities: row.capabilities,
      touchedAt: row.lastSeenAt.getTime(),
      expiresAt: row.expiresAt.getTime(),
    };
  }

  /**
   * Closes `id` if its row has expired by `now` (one conditional UPDATE, published in its
   * transaction); otherwise re-reads it and returns the fresh, open session (or undefined if it
   * was closed elsewhere).
   */
  private async expireOrReread(id: string, now: number): Promise<LiveSession | undefined> {
    const closed = await this.dataSource.transaction(async (em) => {
      const [rows] = await em.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = $2 WHERE id = $1 AND closed_at IS NULL AND expires_at <= $2 RETURNING id', [
        id,
        new Date(now),
      ]);
      await this.publishClosed(rows.map((r) => r.id), em);
      return rows.length > 0;
    });
    if (closed) {
      this.forget(id);
      return undefined;
    }
    this.cache.invalidate(id);
    const fresh = await this.cache.get(id);
    if (!fresh || fresh.expiresAt <= now) {
      if (!fresh) this.forget(id);
      return undefined;
    }
    return fresh;
  }

  /**
   * Extends the session from `now` (row and this replica's copy). False when the row is no
   * longer open and unexpired — closed or expired elsewhere — after settling which.
   */
  private async touch(session: LiveSession, now: number): Promise<boolean> {
    // Updated first, so concurrent requests on this replica do not all write.
    session.touchedAt = now;
    session.expiresAt = now + this.config.mcp.sessionTimeoutMs;
    const [, updated] = await this.repo.query<[unknown[], number]>(
      'UPDATE mcp_sessions SET last_seen_at = $2, expires_at = GREATEST(expires_at, $3) WHERE id = $1 AND closed_at IS NULL AND expires_at > $2',
      [session.id, new Date(now), new Date(session.expiresAt)],
    );
    if (updated === 1) return true;
    return (await this.expireOrReread(session.id, now)) !== undefined;
  }

  private async publishClosed(ids: string[], tx: Queryable): Promise<void> {
    for (const id of ids) await this.bus.publish(SESSION_CLOSED, { id }, tx);
  }

  /** The id of the session `token` names: remembered ({@link tokenIds}), else its SHA-256. */
  private idOf(token: string): string {
    return this.tokenIds.get(token) ?? hash(token);
  }

  /** Enters `token` (of the open session `id`) in the token memo ({@link tokenIds}), unless it is there. */
  private rememberToken(token: string, id: string): void {
    if (this.tokenOf.has(id)) return;
    this.tokenIds.set(token, id);
    this.tokenOf.set(id, token);
  }

  private forget(id: string): void {
    const token = this.tokenOf.get(id);
    if (token !== undefined) this.tokenIds.delete(token);
    this.cache.invalidate(id);
    for (const listener of this.closeListeners) listener(id);
  }
}
