import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, IsNull, MoreThan, Repository } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { withAdvisoryLock } from '../database/advisory-lock.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { McpSessionEntity } from './mcp-session.entity.js';

/** Bus topic: `{ id }` (hashed) of a session that was closed; every replica drops it. */
export const SESSION_CLOSED = 'sessions.closed';

/** Write `last_seen_at` at most this often per session (steady state: no write per request). */
const TOUCH_EVERY_MS = 60_000;

export interface SessionInit {
  principal: string;
  endpoint: string;
  protocolVersion: string;
  clientInfo: Record<string, unknown>;
  capabilities: Record<string, unknown>;
}

export interface LiveSession {
  id: string;
  principal: string;
  endpoint: string;
  protocolVersion: string;
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

export class TooManySessionsError extends Error {}

const hash = (token: string) => createHash('sha256').update(token).digest('hex');

/**
 * Legacy (2025-era) MCP sessions, kept in PostgreSQL so any replica serves any session. Each
 * replica caches the sessions it has seen; a close on any replica is broadcast on the change
 * bus. The session id handed to the client is 256 random bits; only its hash is stored.
 */
@Injectable()
export class SessionsService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly cache = new Map<string, LiveSession>();
  private readonly closeListeners = new Set<(id: string) => void>();
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectRepository(McpSessionEntity) private readonly repo: Repository<McpSessionEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly dataSource: DataSource,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Sessions');
  }

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.bus.subscribe<{ id?: string }>(SESSION_CLOSED, (event) => {
        if (event.data?.id) this.forget(event.data.id);
      }),
      // Closes may have been missed while disconnected: re-check every cached session on next use.
      this.bus.subscribe(RESYNC_TOPIC, () => this.cache.clear()),
    );
    void this.schema.whenMigrated().then(() => this.scheduleSweep());
  }

  beforeApplicationShutdown(): void {
    clearTimeout(this.sweepTimer);
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Called with the (hashed) id of every session that ends, on whichever replica ended it. */
  onClosed(listener: (id: string) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /** Opens a session; returns the token for the `Mcp-Session-Id` header. */
  async create(init: SessionInit): Promise<{ token: string; session: LiveSession }> {
    const open = await this.repo.count({ where: { principal: init.principal, closedAt: IsNull(), expiresAt: MoreThan(new Date()) } });
    // Sessions opened without credentials share one bound: ten times the per-principal one.
    const pending = init.principal === PENDING_PRINCIPAL;
    const limit = this.config.mcp.maxSessionsPerPrincipal * (pending ? 10 : 1);
    if (open >= limit) {
      throw new TooManySessionsError(
        pending
          ? `too many MCP sessions opened without credentials (${limit}: 10 × HTTP_MAX_CONCURRENT_SESSIONS); send credentials with initialize, or wait for idle ones to expire`
          : `too many open MCP sessions for this principal (${limit}, HTTP_MAX_CONCURRENT_SESSIONS); end one with DELETE or wait for idle ones to expire`,
      );
    }
    const token = randomBytes(32).toString('base64url');
    const now = Date.now();
    const expiresAt = now + this.config.mcp.sessionTimeoutMs;
    const id = hash(token);
    await this.repo.query(
      `INSERT INTO mcp_sessions (id, principal, endpoint, protocol_version, client_info, capabilities, last_seen_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [id, init.principal, init.endpoint, init.protocolVersion, init.clientInfo, init.capabilities, new Date(now), new Date(expiresAt)],
    );
    const session: LiveSession = { id, principal: init.principal, endpoint: init.endpoint, protocolVersion: init.protocolVersion, touchedAt: now, expiresAt };
    this.cache.set(id, session);
    return { token, session };
  }

  /**
   * The open session for `token` on `endpoint`, or undefined (unknown, closed, expired, or
   * opened on another endpoint: all answered alike, so the answer reveals nothing).
   */
  async resolve(token: string, endpoint: string): Promise<LiveSession | undefined> {
    if (token.length === 0 || token.length > 200) return undefined;
    const id = hash(token);
    const now = Date.now();
    let session = this.cache.get(id);
    if (!session) {
      const row = await this.repo.findOneBy({ id, closedAt: IsNull() });
      if (!row) return undefined;
      session = {
        id,
        principal: row.principal,
        endpoint: row.endpoint,
        protocolVersion: row.protocolVersion,
        touchedAt: row.lastSeenAt.getTime(),
        expiresAt: row.expiresAt.getTime(),
      };
      this.cache.set(id, session);
    }
    if (session.endpoint !== endpoint) return undefined;
    if (session.expiresAt <= now) {
      await this.closeById(id);
      return undefined;
    }
    if (now - session.touchedAt >= TOUCH_EVERY_MS) {
      session.touchedAt = now;
      session.expiresAt = now + this.config.mcp.sessionTimeoutMs;
      await this.repo.update({ id }, { lastSeenAt: new Date(now), expiresAt: new Date(session.expiresAt) });
    }
    return session;
  }

  /**
   * Binds a session opened without credentials (`MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=false`)
   * to the first principal that authenticates on it. Returns false when another principal
   * got there first (on any replica): the caller then answers as for an unknown session.
   */
  async bind(session: LiveSession, principal: string): Promise<boolean> {
    if (!session.principal.startsWith(PENDING_PREFIX)) return session.principal === principal;
    const result = await this.repo.query<[unknown[], number]>('UPDATE mcp_sessions SET principal = $1 WHERE id = $2 AND principal = $3 AND closed_at IS NULL', [
      principal,
      session.id,
      session.principal,
    ]);
    if (result[1] === 1) {
      session.principal = principal;
      return true;
    }
    // Bound elsewhere meanwhile: re-read, then compare.
    this.cache.delete(session.id);
    const row = await this.repo.findOneBy({ id: session.id, closedAt: IsNull() });
    if (row) session.principal = row.principal;
    return row?.principal === principal;
  }

  /** Ends every open session of these principals, on every replica (key revoked, user disabled). */
  async closeForPrincipals(principals: string[]): Promise<number> {
    if (principals.length === 0) return 0;
    const [rows] = await this.repo.query<[{ id: string }[], number]>('UPDATE mcp_sessions SET closed_at = now() WHERE principal = ANY($1) AND closed_at IS NULL RETURNING id', [
      principals,
    ]);
    for (const { id } of rows) {
      this.forget(id);
      await this.bus.publish(SESSION_CLOSED, { id });
    }
    return rows.length;
  }

  /** Ends the session on every replica. */
  async close(session: LiveSession): Promise<void> {
    await this.closeById(session.id);
  }

  /** Closes expired sessions and deletes long-closed rows, on one replica at a time. */
  async sweep(): Promise<number> {
    return withAdvisoryLock(this.dataSource, 'gatehouse:session-sweep', async (qr) => {
      const expired = (await qr.query(
        'UPDATE mcp_sessions SET closed_at = now() WHERE closed_at IS NULL AND expires_at < now() RETURNING id',
      )) as [{ id: string }[], number];
      await qr.query("DELETE FROM mcp_sessions WHERE closed_at < now() - interval '1 day'");
      for (const { id } of expired[0]) await this.bus.publish(SESSION_CLOSED, { id });
      return expired[0].length;
    });
  }

  private scheduleSweep(): void {
    this.sweepTimer = setTimeout(() => {
      this.sweep()
        .then((n) => n > 0 && this.logger.info({ sessions: n }, 'closed idle MCP sessions'))
        .catch((error: unknown) => this.logger.warn({ err: error }, 'session sweep failed'))
        .finally(() => this.scheduleSweep());
    }, this.config.mcp.sessionSweepIntervalMs);
    this.sweepTimer.unref();
  }

  private async closeById(id: string): Promise<void> {
    await this.repo.update({ id, closedAt: IsNull() }, { closedAt: new Date() });
    this.forget(id);
    await this.bus.publish(SESSION_CLOSED, { id });
  }

  private forget(id: string): void {
    this.cache.delete(id);
    for (const listener of this.closeListeners) listener(id);
  }
}
