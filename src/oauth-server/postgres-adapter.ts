import type { DataSource } from 'typeorm';
import type { Adapter, AdapterPayload } from 'oidc-provider';
import type { Queryable } from '../database/change-bus.js';

/** Models whose rows carry a `grantId` and are dropped with their grant (oidc-provider's `revokeByGrantId`). */
const GRANTABLE = new Set(['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest', 'PreAuthorizedCode']);

/**
 * Seconds a row outlives its expiry, per model: an expired device code stays readable so a client
 * still polling is told `expired_token` (RFC 8628 §3.5), not `invalid_grant` as for a code that
 * never existed. oidc-provider checks the payload's own `exp`.
 */
const KEPT_AFTER_EXPIRY_SEC: Record<string, number> = { DeviceCode: 3600 };

/** Options of {@link PostgresAdapter}. */
export interface PostgresAdapterOptions {
  /**
   * A rotated refresh token presented again within this many ms of its first use is treated as
   * not yet used (both concurrent refreshes succeed); after it, reuse revokes the grant
   * (OAuth 2.1 §4.3.1, refresh token rotation with reuse detection). 0 turns the grace off.
   */
  refreshReuseGraceMs: number;
  /**
   * Told of every Grant oidc-provider destroys (a refresh token revoked at `/oauth/revoke`, a
   * replayed code or rotated refresh token): `record` runs inside the deleting transaction,
   * `markLocally` after it commits (see `RevokedGrantsService`), so the grant's JWT access tokens
   * stop working too.
   */
  revocations?: { record(tx: Queryable, grantIds: readonly string[]): Promise<void>; markLocally(grantIds: readonly string[]): void };
}

/** What the admin API stores beside a client: `admin` for pre-registered ones, `dynamic` for RFC 7591 registrations. */
export type ClientSource = 'admin' | 'dynamic';

/**
 * oidc-provider's storage adapter on PostgreSQL: one row per model instance in `oauth_models`
 * (migration AddOAuthServer), so every replica serves every step of every flow. Expired rows are
 * invisible at once and deleted by {@link sweepExpiredOAuthModels}. `consume` records the first
 * use only; a consumed refresh token is reported unconsumed within the grace window (see
 * {@link PostgresAdapterOptions.refreshReuseGraceMs}), which is how two concurrent refreshes of
 * the same token both succeed while a late replay still revokes the grant.
 */
export class PostgresAdapter implements Adapter {
  constructor(
    private readonly model: string,
    private readonly db: DataSource,
    private readonly options: PostgresAdapterOptions,
  ) {}

  async upsert(id: string, payload: AdapterPayload, expiresIn: number | undefined): Promise<void> {
    // Times come from PostgreSQL's clock (one clock for every replica).
    const ttlSec = typeof expiresIn === 'number' && expiresIn > 0 ? expiresIn + (KEPT_AFTER_EXPIRY_SEC[this.model] ?? 0) : null;
    const source = this.model === 'Client' ? 'dynamic' : null;
    await this.db.query(
      `INSERT INTO oauth_models (model, id, payload, grant_id, uid, user_code, account_id, client_id, source, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, now() + make_interval(secs => $10::double precision))
       ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload, grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid,
         user_code = EXCLUDED.user_code, account_id = EXCLUDED.account_id, client_id = EXCLUDED.client_id,
         source = COALESCE(oauth_models.source, EXCLUDED.source), expires_at = EXCLUDED.expires_at`,
      [
        this.model,
        id,
        JSON.stringify(payload),
        GRANTABLE.has(this.model) || this.model === 'Grant' ? (payload.grantId ?? (this.model === 'Grant' ? id : null)) : null,
        payload.uid ?? null,
        payload.userCode ?? null,
        payload.accountId ?? null,
        payload.clientId ?? (this.model === 'Client' ? id : null),
        source,
        ttlSec,
      ],
    );
  }

  async find(id: string): Promise<AdapterPayload | undefined> {
    return this.one('id = $2', id);
  }

  async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
    return this.one('user_code = $2', userCode);
  }

  async findByUid(uid: string): Promise<AdapterPayload | undefined> {
    return this.one('uid = $2', uid);
  }

  async consume(id: string): Promise<void> {
    await this.db.query('UPDATE oauth_models SET consumed_at = COALESCE(consumed_at, now()) WHERE model = $1 AND id = $2', [this.model, id]);
  }

  async destroy(id: string): Promise<void> {
    const revocations = this.model === 'Grant' ? this.options.revocations : undefined;
    if (!revocations) {
      await this.db.query('DELETE FROM oauth_models WHERE model = $1 AND id = $2', [this.model, id]);
      return;
    }
    await this.db.transaction(async (em) => {
      await em.query('DELETE FROM oauth_models WHERE model = $1 AND id = $2', [this.model, id]);
      await revocations.record(em, [id]);
    });
    revocations.markLocally([id]);
  }

  async revokeByGrantId(grantId: string): Promise<void> {
    await this.db.query('DELETE FROM oauth_models WHERE model = $1 AND grant_id = $2', [this.model, grantId]);
  }

  private async one(where: string, value: string): Promise<AdapterPayload | undefined> {
    const rows = await this.db.query<{ payload: AdapterPayload; consumed: string | null; in_grace: boolean | null }[]>(
      `SELECT payload, extract(epoch FROM consumed_at) AS consumed, consumed_at > now() - make_interval(secs => $3::double precision) AS in_grace
       FROM oauth_models WHERE model = $1 AND ${where} AND (expires_at IS NULL OR expires_at > now())`,
      [this.model, value, this.model === 'RefreshToken' ? this.options.refreshReuseGraceMs / 1000 : 0],
    );
    const row = rows[0];
    if (!row) return undefined;
    const payload = row.payload;
    // Within the grace window a consumed refresh token reads as unconsumed (see the class).
    if (row.consumed !== null && row.in_grace !== true) payload.consumed = Math.floor(Number(row.consumed));
    return payload;
  }
}

/** Deletes expired authorization-server rows; returns how many. Run periodically by one replica at a time or all (idempotent). */
export async function sweepExpiredOAuthModels(db: DataSource): Promise<number> {
  const result = await db.query<[unknown, number]>('DELETE FROM oauth_models WHERE expires_at IS NOT NULL AND expires_at <= now()');
  return result[1] ?? 0;
}
