import type { JWTPayload } from 'jose';
import { rememberSubjectToken } from '../subject-token.js';
import { AppError } from '../../common/errors/app-error.js';
import { ErrorCode } from '../../common/errors/error-code.js';
import { ReplicatedCache, type CacheBus } from '../../database/replicated-cache.js';
import { userPrincipalId, type UsersService } from '../../users/users.service.js';
import { USERS_CHANGED } from '../../users/users.topics.js';
import { InvalidTokenError, audienceForGateway, audienceProblem, audiencesOf, type AudiencePolicy, type JwtVerifier, type RequestResource } from '../jwt-verifier.js';
import { PERMISSIONS, permissionsFor, type AuthMethod, type Principal } from '../principal.js';
import { claimList } from './credential.js';
import { GRANT_ID_CLAIM, type GrantRevocations } from '../../oauth-server/revoked-grants.service.js';

/**
 * The principal for a verified token: the user (created on first sight from `iss` + `sub`),
 * roles from Gatehouse (admin-managed) plus those the token's roles claim carries, groups from
 * the groups claim. A token with a `scope` naming Gatehouse permissions is limited to them.
 */
export async function principalFromToken(
  users: UsersService,
  payload: JWTPayload,
  method: AuthMethod,
  claims: TokenClaims,
): Promise<Principal> {
  let groups = claimList(payload, claims.groups);
  const str = (v: unknown) => (typeof v === 'string' && v !== '' ? v.slice(0, 320) : null);
  let email = str(payload.email);
  let displayName = str(payload.name) ?? str(payload.preferred_username) ?? email;
  let user: Awaited<ReturnType<UsersService['resolve']>>;
  if (claims.ownIssuer !== undefined && payload.iss === claims.ownIssuer) {
    // Gatehouse's own authorization server: `sub` is the users row's id (docs/oauth-server.md).
    const found = await users.byId(payload.sub as string);
    if (!found) throw new InvalidTokenError("the token's user no longer exists");
    user = found;
    ({ email, displayName, groups } = { email: user.email, displayName: user.displayName ?? user.email, groups: user.groups });
  } else {
    user = await users.resolve({ issuer: payload.iss ?? claims.defaultIssuer, subject: payload.sub as string, email, displayName, groups });
  }
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
    credentialExpiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : null,
  };
}

/**
 * How a strategy reads token claims; `ownIssuer`: tokens of this issuer name a users row by id in
 * `sub`; `ownRevocations`: those carrying a `grant_id` claim are refused once that approval is
 * revoked (checked on every request, cached principal or not).
 */
export interface TokenClaims {
  roles: string;
  groups: string;
  defaultIssuer: string;
  ownIssuer?: string;
  ownRevocations?: GrantRevocations;
}

/** The refusal of a token whose approval (grant) was revoked. */
function refuseRevoked(): never {
  throw new InvalidTokenError('the approval this token was issued under has been revoked; sign in again');
}

/** Longest (ms) a token's principal is reused without re-resolving the user (keeps `last_seen_at` current). */
const PRINCIPAL_CACHE_MS = 60_000;
const MAX_CACHED = 10_000;

interface CachedPrincipal {
  principal: Principal;
  /** The token's `exp` in ms since the epoch (Infinity without one). */
  expiresAt: number;
  /** The token's audiences, checked against each request's resource. */
  audiences: string[];
  /** The approval a Gatehouse-issued token was issued under (checked against revocations on each request). */
  grantId?: string;
}

/**
 * Turns a JWT into its principal, for `bearer` and `oauth2` alike: verify (see
 * {@link JwtVerifier}), then {@link principalFromToken}. Each recently seen token's principal is
 * kept in a {@link ReplicatedCache}, so a client re-sending its token costs one lookup: for
 * min(token `exp`, 60 s), and dropped when its user changes on any replica (`users.changed`;
 * on the writing replica at once, through {@link UsersService.onLocalChange}) — a resolution
 * racing such a change is discarded, never cached. The token's audience is checked against
 * the resource of every request ({@link audienceProblem}); a token meant for no resource of this
 * gateway is refused before its user is looked up. Throws `InvalidTokenError` (401) for a bad
 * token or one not meant for the request's resource, and `AppError` forbidden for a disabled user.
 */
export class TokenAuthenticator {
  private readonly cache: ReplicatedCache<string, CachedPrincipal>;
  private readonly now: () => number;
  private readonly offLocal: () => void;

  /**
   * @param audience which audiences this strategy accepts besides the request's resource
   * @param bus the change bus (`users.changed`, `$resync`)
   * @param clock wall clock in ms since the epoch (tests pass a fake); also the cache's TTL clock
   */
  constructor(
    private readonly users: UsersService,
    private readonly verifier: JwtVerifier,
    private readonly method: AuthMethod,
    private readonly claims: TokenClaims,
    private readonly audience: AudiencePolicy,
    bus: CacheBus,
    clock?: { now(): number },
  ) {
    this.now = clock ? () => clock.now() : Date.now;
    this.cache = new ReplicatedCache<string, CachedPrincipal>(
      {
        name: `${method}-principals`,
        max: MAX_CACHED,
        ttlMs: PRINCIPAL_CACHE_MS,
        // Within the verifier's clock tolerance a token may already be past `exp`: cache it for 1 ms only.
        ttlOf: (entry) => (entry.expiresAt === Infinity ? undefined : Math.max(1, entry.expiresAt - this.now())),
        load: (token) => this.resolve(token),
        ...(clock ? { clock } : {}),
      },
      bus,
    ).invalidateOn(USERS_CHANGED, ({ id }) => ({ where: (_token, entry) => entry.principal.userId === id }));
    // A change made on this replica applies to its next request, before the event comes back.
    this.offLocal = users.onLocalChange((id) => this.cache.invalidateWhere((_token, entry) => entry.principal.userId === id));
  }

  /** The principal for `token` used on `target` (the request's resource); {@link principalFor} as a promise. */
  async authenticate(token: string, target: RequestResource): Promise<Principal> {
    return this.principalFor(token, target);
  }

  /**
   * {@link authenticate} without a promise when none is needed: synchronous when the token's
   * principal is cached and its revocation status is known in memory (the principal, or the
   * refusal thrown), otherwise a promise of the same. The cached entry is the only memo: it
   * lives no longer than the token's `exp` (the cache's per-entry TTL) and is dropped when its
   * user changes; the audience is checked against `target` and an issued token's grant against
   * the revocations on every call, cached or not.
   */
  principalFor(token: string, target: RequestResource): Principal | Promise<Principal> {
    const entry = this.cache.peek(token);
    // `exp` checked here too, not only by the cache's TTL (whose clock may lag by its resolution,
    // and which still serves an entry at exactly its TTL): from `exp` on, the token is verified
    // again (the verifier refuses it, or accepts it within its clock tolerance).
    if (entry !== undefined && entry.expiresAt > this.now()) return this.admit(entry, target);
    if (entry !== undefined) this.cache.invalidate(token);
    return this.cache.get(token).then((loaded) => this.admit(loaded, target));
  }

  /** The per-request checks of a cached or loaded entry: audience for `target`, grant not revoked. */
  private admit(entry: CachedPrincipal, target: RequestResource): Principal | Promise<Principal> {
    const problem = audienceProblem(entry.audiences, target, this.audience);
    if (problem) throw new InvalidTokenError(problem);
    const revocations = this.claims.ownRevocations;
    if (entry.grantId === undefined || !revocations) return entry.principal;
    const revoked = revocations.isRevoked(entry.grantId);
    if (revoked instanceof Promise) return revoked.then((yes) => (yes ? refuseRevoked() : entry.principal));
    return revoked ? refuseRevoked() : entry.principal;
  }

  /** Stops listening to the bus and drops every cached principal. */
  dispose(): void {
    this.offLocal();
    this.cache.dispose();
  }

  private async resolve(token: string): Promise<CachedPrincipal> {
    const payload = await this.verifier.verify(token);
    const audiences = audiencesOf(payload);
    if (!audienceForGateway(audiences, this.audience)) throw new InvalidTokenError('the token is not meant for this gateway (audience)');
    const principal = await principalFromToken(this.users, payload, this.method, this.claims);
    const grantId = this.claims.ownIssuer !== undefined && payload.iss === this.claims.ownIssuer ? payload[GRANT_ID_CLAIM] : undefined;
    // For RFC 8693 exchange on the caller's behalf; never stored on the principal itself.
    rememberSubjectToken(principal, token);
    return { principal, audiences, expiresAt: typeof payload.exp === 'number' ? payload.exp * 1000 : Infinity, ...(typeof grantId === 'string' ? { grantId } : {}) };
  }
}
