import type { JWTPayload } from 'jose';
import { AppError } from '../../common/errors/app-error.js';
import { ErrorCode } from '../../common/errors/error-code.js';
import { userPrincipalId, type UsersService } from '../../users/users.service.js';
import type { JwtVerifier } from '../jwt-verifier.js';
import { PERMISSIONS, permissionsFor, type AuthMethod, type Principal } from '../principal.js';
import { claimList } from './credential.js';

/**
 * The principal for a verified token: the user (created on first sight from `iss` + `sub`),
 * roles from Gatehouse (admin-managed) plus those the token's roles claim carries, groups from
 * the groups claim. A token with a `scope` naming Gatehouse permissions is limited to them.
 */
export async function principalFromToken(
  users: UsersService,
  payload: JWTPayload,
  method: AuthMethod,
  claims: { roles: string; groups: string; defaultIssuer: string },
): Promise<Principal> {
  const groups = claimList(payload, claims.groups);
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v.slice(0, 320) : null);
  const email = str(payload.email);
  const displayName = str(payload.name) ?? str(payload.preferred_username) ?? email;
  const user = await users.resolve({ issuer: payload.iss ?? claims.defaultIssuer, subject: payload.sub as string, email, displayName, groups });
  if (user.disabled) throw new AppError(ErrorCode.Forbidden, 'this user is disabled; ask an administrator');
  const roles = [...new Set([...user.roles, ...claimList(payload, claims.roles)])];
  let scopes: string[] = permissionsFor(roles);
  const granted = [...claimList(payload, 'scope'), ...claimList(payload, 'scp')].filter((s) => (PERMISSIONS as readonly string[]).includes(s));
  if (granted.length > 0) scopes = scopes.filter((s) => granted.includes(s));
  return {
    userId: user.id,
    id: userPrincipalId(user.id),
    displayName: displayName ?? user.subject,
    email,
    roles,
    groups,
    scopes,
    method,
    keyId: null,
  };
}

const PRINCIPAL_CACHE_MS = 60_000;
const MAX_CACHED = 10_000;

/**
 * Turns a JWT into its principal, for `bearer` and `oauth2` alike: verify (see
 * {@link JwtVerifier}), then {@link principalFromToken}. Each recently seen token's principal is
 * kept, so a client re-sending its token costs one map lookup: until the token expires (at most
 * a minute, so `last_seen_at` stays current) and only while no user changed (roles, disabled)
 * on any replica.
 */
export class TokenAuthenticator {
  private readonly entries = new Map<string, { principal: Principal; until: number; version: number }>();

  constructor(
    private readonly users: UsersService,
    private readonly verifier: JwtVerifier,
    private readonly method: AuthMethod,
    private readonly claims: { roles: string; groups: string; defaultIssuer: string },
  ) {}

  async authenticate(token: string): Promise<Principal> {
    const hit = this.entries.get(token);
    if (hit && hit.until > Date.now() && hit.version === this.users.version) return hit.principal;
    const version = this.users.version;
    const payload = await this.verifier.verify(token);
    const principal = await principalFromToken(this.users, payload, this.method, this.claims);
    const expiry = typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity;
    this.entries.delete(token);
    if (this.entries.size >= MAX_CACHED) this.entries.delete(this.entries.keys().next().value as string);
    this.entries.set(token, { principal, until: Math.min(expiry, Date.now() + PRINCIPAL_CACHE_MS), version });
    return principal;
  }
}
