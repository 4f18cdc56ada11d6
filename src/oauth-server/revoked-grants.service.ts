import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { RESYNC_TOPIC, stringFields, topic, type Queryable } from '../database/change-bus.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { SchemaStateService } from '../database/schema-state.service.js';

/**
 * Bus topic `oauth.grant_revoked`, payload `{ id }`: an approval (oidc-provider Grant) was
 * revoked; every replica refuses the access tokens issued under it from then on. Published inside
 * the revoking transaction by {@link RevokedGrantsService.record}.
 */
export const OAUTH_GRANT_REVOKED = topic<{ id: string }>('oauth.grant_revoked', stringFields('id'));

/** The `oauth_models.model` of a revocation marker (no payload; `id` is the grant id; `expires_at` when no token of it can be valid). */
export const REVOKED_GRANT_MODEL = 'RevokedGrant';

/** The claim of a Gatehouse-issued JWT access token naming the grant it was issued under (added by `extraTokenClaims`). */
export const GRANT_ID_CLAIM = 'grant_id';

/** How a token check asks whether a grant was revoked. */
export interface GrantRevocations {
  /** True when grant `grantId` was revoked and tokens issued under it may still be unexpired. */
  isRevoked(grantId: string): boolean | Promise<boolean>;
}

/**
 * The set of revoked approvals whose access tokens may still be unexpired, held in memory on
 * every replica so the per-request check is a map lookup, never a database read.
 *
 * Gatehouse's JWT access tokens are verified locally (no introspection call), so deleting a grant
 * alone would leave its access tokens working until they expire (GATEHOUSE_OAUTH_ACCESS_TOKEN_TTL).
 * Instead every revocation — `DELETE /api/v1/me/grants/<id>`, the admin's per-user variant,
 * deleting a client, and oidc-provider's own revocations (a refresh token revoked at
 * `/oauth/revoke`, a rotated refresh token or a code replayed; RFC 7009 §2.1 "the authorization
 * server SHOULD also invalidate all access tokens based on the same authorization grant") —
 * writes a marker row (`oauth_models`, model `RevokedGrant`, kept until every token of the grant
 * has expired: access-token lifetime + clock tolerance) and publishes {@link OAUTH_GRANT_REVOKED}
 * in the same transaction. The revoking replica applies it at once; the others when the bus
 * delivers it (milliseconds). The markers are read at start (after migrations) and again after
 * the bus reconnects (`$resync`: notifications in between are lost), and a replica whose bus is
 * down is not ready (`/readyz` 503), as for every other replicated cache.
 */
@Injectable()
export class RevokedGrantsService implements GrantRevocations, OnModuleInit, OnApplicationShutdown {
  /** grant id → ms since the epoch (this replica's clock) after which its tokens have all expired. */
  private readonly revoked = new Map<string, number>();
  private loading: Promise<void> | undefined;
  private loaded = false;
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly db: DataSource,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** How long (ms) a revocation must be remembered: the longest an access token issued before it stays valid. */
  get lifetimeMs(): number {
    return this.config.oauthServer.accessTokenTtlMs + this.config.auth.jwt.clockToleranceSec * 1000;
  }

  onModuleInit(): void {
    if (!this.config.oauthServer.enabled) return;
    this.unsubscribe.push(
      this.bus.subscribe(OAUTH_GRANT_REVOKED, (event) => {
        // Notifications were lost while the bus was down: read the markers again (the set in
        // memory keeps answering meanwhile; markers are only ever added).
        if (event.topic === RESYNC_TOPIC) return void this.load().catch(() => undefined);
        this.markLocally([event.data.id]);
      }),
    );
    void this.schema.whenMigrated().then(() => this.load().catch(() => undefined));
  }

  onApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Whether `grantId` was revoked (see the class); waits for the first load of the markers only. */
  isRevoked(grantId: string): boolean | Promise<boolean> {
    if (!this.loaded) return this.load().then(() => this.has(grantId));
    return this.has(grantId);
  }

  /**
   * Records the revocation of `grantIds` inside `tx` (the transaction deleting the grants): a
   * marker row each and one bus event each, delivered on commit. Call {@link markLocally} after
   * the commit so this replica refuses the tokens before its own notification comes back.
   */
  async record(tx: Queryable, grantIds: readonly string[]): Promise<void> {
    for (const id of new Set(grantIds)) {
      await tx.query(
        `INSERT INTO oauth_models (model, id, payload, expires_at) VALUES ($1, $2, '{}', now() + make_interval(secs => $3::double precision))
         ON CONFLICT (model, id) DO UPDATE SET expires_at = EXCLUDED.expires_at`,
        [REVOKED_GRANT_MODEL, id, this.lifetimeMs / 1000],
      );
      await this.bus.publish(OAUTH_GRANT_REVOKED, { id }, tx);
    }
  }

  /** Refuses the tokens of `grantIds` on this replica now (the bus brings it to the others). */
  markLocally(grantIds: readonly string[]): void {
    const until = Date.now() + this.lifetimeMs;
    for (const id of grantIds) this.revoked.set(id, Math.max(until, this.revoked.get(id) ?? 0));
  }

  /** {@link record} in a transaction of its own, then {@link markLocally}. */
  async revoke(grantIds: readonly string[]): Promise<void> {
    if (grantIds.length === 0) return;
    await this.db.transaction((em) => this.record(em, grantIds));
    this.markLocally(grantIds);
  }

  private has(grantId: string): boolean {
    const until = this.revoked.get(grantId);
    if (until === undefined) return false;
    if (until > Date.now()) return true;
    this.revoked.delete(grantId);
    return false;
  }

  /** Reads every unexpired marker (merged with what events added meanwhile); single-flight. */
  private load(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const rows = await this.db.query<{ id: string; remaining_ms: string }[]>(
          'SELECT id, extract(epoch FROM expires_at - now()) * 1000 AS remaining_ms FROM oauth_models WHERE model = $1 AND expires_at > now()',
          [REVOKED_GRANT_MODEL],
        );
        const now = Date.now();
        for (const [id, until] of this.revoked) if (until <= now) this.revoked.delete(id);
        for (const row of rows) this.revoked.set(row.id, Math.max(now + Number(row.remaining_ms), this.revoked.get(row.id) ?? 0));
        this.loaded = true;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }
}
