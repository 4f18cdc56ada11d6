import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

export interface JwtVerifierOptions {
  /** HMAC secret (HS256/384/512). */
  secret?: string;
  /** A JWKS URL, or a function that finds it (OAuth/OIDC discovery) on first use. */
  jwks?: string | (() => Promise<string>);
  /** Keys held in process (Gatehouse's own authorization server): no JWKS fetch. */
  keys?: JWTVerifyGetKey;
  algorithms: string[];
  issuer?: string;
  /** Seconds of leeway for `exp`, `nbf` and a future `iat`. */
  clockToleranceSec: number;
  /** Refuse tokens without `exp` (MCP_JWT_REQUIRE_EXP, default true): they would never expire. */
  requireExp?: boolean;
  /** Clock in ms since the epoch (tests pass a fake); default `Date.now`. */
  now?: () => number;
}

/**
 * The protected resource a request targets (RFC 8707 §2, RFC 9728 §3): `resource` is its
 * canonical URI, `accepts` the audiences a token may name to be used on it (`resource` itself
 * and, for a single-server endpoint `PUBLIC_URL/mcp/<server>`, the whole gateway's
 * `PUBLIC_URL/mcp`, whose tools include that server's).
 */
export interface RequestResource {
  resource: string;
  accepts: readonly string[];
}

/**
 * Which audiences a strategy accepts besides the request's own resource (MCP authorization
 * spec, "Token Audience Binding and Validation"; RFC 7519 §4.1.3).
 */
export interface AudiencePolicy {
  /** `PUBLIC_URL` without a trailing slash: audiences under it name this gateway's resources. */
  publicUrl: string;
  /** Operator-configured audiences (MCP_JWT_AUDIENCE / MCP_OAUTH_AUDIENCE), accepted on every route. */
  configured: readonly string[];
  /** Whether a token without `aud` is accepted (only `bearer` with no configured audience). */
  allowMissing: boolean;
}

/** A token's `aud` claim as a list, trailing slashes dropped (`https://h/mcp/` is `https://h/mcp`). */
export function audiencesOf(payload: JWTPayload): string[] {
  const raw = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  return raw.filter((a): a is string => typeof a === 'string').map((a) => a.replace(/\/+$/, ''));
}

/**
 * Whether a token with audiences `auds` is meant for this gateway at all: an operator-configured
 * audience, one of its resource URIs (`PUBLIC_URL/api`, `PUBLIC_URL/mcp`,
 * `PUBLIC_URL/mcp/<server>`), or no `aud` where the policy allows it. Checked before a user is
 * created on first sight.
 */
export function audienceForGateway(auds: readonly string[], policy: AudiencePolicy): boolean {
  if (auds.length === 0) return policy.allowMissing;
  const mcp = `${policy.publicUrl}/mcp`;
  return auds.some(
    (a) => policy.configured.includes(a) || a === `${policy.publicUrl}/api` || a === mcp || (a.startsWith(`${mcp}/`) && !a.slice(mcp.length + 1).includes('/')),
  );
}

/**
 * Why a token with audiences `auds` may not be used on `target`, or undefined when it may:
 * accepted when it names an operator-configured audience, or one of `target.accepts`, or has
 * no `aud` where the policy allows it. A token for `PUBLIC_URL/mcp/github` is therefore refused
 * on `/mcp`, on `/mcp/<other>` and on the admin API (`PUBLIC_URL/api`).
 */
export function audienceProblem(auds: readonly string[], target: RequestResource, policy: AudiencePolicy): string | undefined {
  if (auds.length === 0 && policy.allowMissing) return undefined;
  if (auds.some((a) => policy.configured.includes(a) || target.accepts.includes(a))) return undefined;
  return `the token is not meant for ${target.resource} (audience)`;
}

type KeyForVerify = Awaited<ReturnType<JWTVerifyGetKey>>;

/** A token refused, with the reason told to the client (RFC 6750 `error_description`). */
export class InvalidTokenError extends Error {}

const MAX_CACHED = 10_000;
/** At most one JWKS refetch (for an unknown `kid`) per this interval, however many tokens ask. */
export const JWKS_REFETCH_COOLDOWN_MS = 5_000;
const CACHE_MS = 5 * 60_000;

/** Why jose refused a token, in words a client can act on (nothing token-specific echoed). */
function describe(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'the token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'exp' && error.reason === 'missing') return 'the token has no expiry ("exp" claim)';
    if (error.claim === 'nbf' || error.claim === 'iat') return 'the token is not yet valid';
    if (error.claim === 'iss') return 'the token was issued by an issuer this gateway does not trust';
    if (error.claim === 'aud') return 'the token is not meant for this gateway (audience)';
    return `the token's "${error.claim}" claim is not acceptable`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'the token is signed with an algorithm this gateway does not accept';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'the token signature is not valid';
  if (error instanceof errors.JWKSNoMatchingKey) return 'the token is signed with a key this gateway does not know';
  if (error instanceof errors.JWKSTimeout || error instanceof errors.JWKSInvalid) return 'the signing keys could not be fetched; try again';
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) return 'the token is malformed';
  return 'the token is not valid';
}

/**
 * Verifies JWT access tokens: HMAC with a shared secret, or public-key algorithms against a
 * JWKS (cached; an unknown `kid` triggers a refetch, at most one per 5 s). `alg: none` is
 * never accepted, and the key is chosen by algorithm family, so an HS token can never be
 * checked against a public key (the classic key-confusion attack). `iss`, `exp`, `nbf` are
 * checked with the clock tolerance; `exp` is required unless `requireExp` is false; an `iat`
 * further in the future than the tolerance is refused (a token cannot be issued later than
 * now); `sub` is required. The audience is *not* checked here: it depends on the resource the
 * request targets (see {@link audienceProblem}). Verified tokens are cached until they expire
 * (at most 5 minutes), so a client re-sending its token costs one lookup. Throws
 * {@link InvalidTokenError} with the reason.
 */
export class JwtVerifier {
  private readonly secret: Uint8Array | undefined;
  private jwks: JWTVerifyGetKey | undefined;
  private jwksPending: Promise<JWTVerifyGetKey> | undefined;
  private readonly cache = new Map<string, { payload: JWTPayload; until: number }>();

  constructor(private readonly options: JwtVerifierOptions) {
    this.secret = options.secret ? new TextEncoder().encode(options.secret) : undefined;
  }

  async verify(token: string): Promise<JWTPayload> {
    const now = (this.options.now ?? Date.now)();
    const hit = this.cache.get(token);
    if (hit) {
      if (hit.until > now) return hit.payload;
      this.cache.delete(token);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, (header, jws) => this.keyFor(header, jws), {
        algorithms: this.options.algorithms,
        issuer: this.options.issuer,
        clockTolerance: this.options.clockToleranceSec,
        requiredClaims: this.options.requireExp === false ? [] : ['exp'],
        currentDate: new Date(now),
      }));
    } catch (error) {
      if (error instanceof InvalidTokenError) throw error;
      throw new InvalidTokenError(describe(error), { cause: error });
    }
    if (typeof payload.iat === 'number' && payload.iat > now / 1000 + this.options.clockToleranceSec) {
      throw new InvalidTokenError('the token is not yet valid ("iat" is in the future)');
    }
    if (typeof payload.sub !== 'string' || payload.sub === '') throw new InvalidTokenError('the token has no "sub" claim');
    const expiry = typeof payload.exp === 'number' ? (payload.exp + this.options.clockToleranceSec) * 1000 : Infinity;
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, { payload, until: Math.min(expiry, now + CACHE_MS) });
    return payload;
  }

  private async keyFor(header: Parameters<JWTVerifyGetKey>[0], jws: Parameters<JWTVerifyGetKey>[1]): Promise<KeyForVerify> {
    if (header.alg?.startsWith('HS')) {
      if (!this.secret) throw new InvalidTokenError('the token is signed with an algorithm this gateway does not accept');
      return this.secret;
    }
    if (this.options.keys) return this.options.keys(header, jws);
    if (!this.options.jwks) throw new InvalidTokenError('the token is signed with an algorithm this gateway does not accept');
    return this.jwksResolver()(header, jws);
  }

  /** jose's remote key set, created on first use (after discovery, where needed). */
  private jwksResolver(): JWTVerifyGetKey {
    if (this.jwks) return this.jwks;
    // Resolved lazily: returns a getter that waits for discovery, then delegates.
    return (async (header: Parameters<JWTVerifyGetKey>[0], token: Parameters<JWTVerifyGetKey>[1]) => {
      if (!this.jwks) {
        this.jwksPending ??= (async () => {
          const source = this.options.jwks;
          const url = typeof source === 'function' ? await source() : (source as string);
          return createRemoteJWKSet(new URL(url), { cooldownDuration: JWKS_REFETCH_COOLDOWN_MS, cacheMaxAge: 10 * 60_000, timeoutDuration: 5_000 });
        })().catch((error: unknown) => {
          this.jwksPending = undefined;
          throw new InvalidTokenError('the signing keys could not be fetched; try again', { cause: error });
        });
        this.jwks = await this.jwksPending;
      }
      return this.jwks(header, token);
    });
  }
}
