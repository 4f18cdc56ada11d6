import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { RevokedGrantsService } from './revoked-grants.service.js';

/** One remembered approval: a user let a client act for them (oidc-provider's Grant). */
export interface GrantView {
  id: string;
  clientId: string;
  clientName: string | null;
  /** Scopes granted, per resource (`PUBLIC_URL/mcp…`) and for OpenID (`openid`). */
  scopes: { openid: string[]; resources: Record<string, string[]> };
  createdAt: string;
  expiresAt: string | null;
}

interface GrantRow {
  id: string;
  client_id: string;
  payload: { openid?: { scope?: string }; resources?: Record<string, string> };
  created_at: Date;
  expires_at: Date | null;
  client_name: string | null;
}

/** Models dropped with their grant: every token and code issued under it. */
const UNDER_GRANT = ['AccessToken', 'AuthorizationCode', 'RefreshToken', 'DeviceCode', 'BackchannelAuthenticationRequest'];

/**
 * Approvals (grants) per user, for `GET/DELETE /api/v1/me/grants` and the admin's per-user
 * view. Revoking a grant deletes it and every refresh token, code and stored token issued under
 * it (PostgreSQL is the only store), and records the revocation with {@link RevokedGrantsService}
 * in the same transaction, so the JWT access tokens already issued under it are refused at once on
 * this replica and on the others as soon as the change bus delivers the event.
 */
@Injectable()
export class GrantsService {
  constructor(
    private readonly db: DataSource,
    private readonly revocations: RevokedGrantsService,
  ) {}

  async list(userId: string): Promise<GrantView[]> {
    const rows = await this.db.query<GrantRow[]>(
      `SELECT g.id, g.client_id, g.payload, g.created_at, g.expires_at, c.payload->>'client_name' AS client_name
       FROM oauth_models g LEFT JOIN oauth_models c ON c.model = 'Client' AND c.id = g.client_id
       WHERE g.model = 'Grant' AND g.account_id = $1 AND (g.expires_at IS NULL OR g.expires_at > now()) ORDER BY g.created_at DESC`,
      [userId],
    );
    return rows.map((r) => ({
      id: r.id,
      clientId: r.client_id,
      clientName: r.client_name,
      scopes: {
        openid: (r.payload.openid?.scope ?? '').split(' ').filter(Boolean),
        resources: Object.fromEntries(Object.entries(r.payload.resources ?? {}).map(([k, v]) => [k, v.split(' ').filter(Boolean)])),
      },
      createdAt: r.created_at.toISOString(),
      expiresAt: r.expires_at?.toISOString() ?? null,
    }));
  }

  /** Revokes grant `grantId` of `userId`. Throws 404 when the user holds no such grant. */
  async revoke(userId: string, grantId: string): Promise<void> {
    await this.db.transaction(async (em) => {
      const found = await em.query<[unknown[], number]>("DELETE FROM oauth_models WHERE model = 'Grant' AND id = $1 AND account_id = $2 RETURNING id", [grantId, userId]);
      if ((found[1] ?? 0) === 0) throw new AppError(ErrorCode.NotFound, `no approval with id "${grantId.slice(0, 64)}" for this user`);
      await em.query('DELETE FROM oauth_models WHERE model = ANY($1) AND grant_id = $2', [UNDER_GRANT, grantId]);
      await this.revocations.record(em, [grantId]);
    });
    this.revocations.markLocally([grantId]);
  }
}
