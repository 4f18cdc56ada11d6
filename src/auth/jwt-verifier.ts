import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';

export interface JwtVerifierOptions {
  /** HMAC secret (HS256/384/512). */
  secret?: string;
  /** A JWKS URL, or a function that finds it (OAuth/OIDC discovery) on first use. */
  jwks?: string | (() => Promise<string>);
  algorithms: string[];
  issuer?: string;
  /** Accepted audiences; `audienceMatches` may widen the check (e.g. per-server MCP resources). */
  audience?: string[];
  audienceMatches?: (aud: string) => boolean;
  clockToleranceSec: number;
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
 * checked against a public key (the classic key-confusion attack). Verified tokens are cached
 * until they expire (at most 5 minutes), so a client re-sending its token costs one lookup.
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
    const now = Date.now();
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
        audience: this.options.audienceMatches ? undefined : this.options.audience,
        clockTolerance: this.options.clockToleranceSec,
      }));
    } catch (error) {
      if (error instanceof InvalidTokenError) throw error;
      throw new InvalidTokenError(describe(error), { cause: error });
    }
    if (this.options.audienceMatches) this.checkAudience(payload);
    if (typeof payload.sub !== 'string' || payload.sub === '') throw new InvalidTokenError('the token has no "sub" claim');
    const expiry = typeof payload.exp === 'number' ? (payload.exp + this.options.clockToleranceSec) * 1000 : Infinity;
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(token, { payload, until: Math.min(expiry, now + CACHE_MS) });
    return payload;
  }

  private checkAudience(payload: JWTPayload): void {
    const auds = typeof payload.aud === 'string' ? [payload.aud] : (payload.aud ?? []);
    const ok = auds.some((a) => (this.options.audience ?? []).includes(a) || this.options.audienceMatches?.(a));
    if (!ok) throw new InvalidTokenError('the token is not meant for this gateway (audience)');
  }

  private async keyFor(header: Parameters<JWTVerifyGetKey>[0], jws: Parameters<JWTVerifyGetKey>[1]): Promise<KeyForVerify> {
    if (header.alg?.startsWith('HS')) {
      if (!this.secret) throw new InvalidTokenError('the token is signed with an algorithm this gateway does not accept');
      return this.secret;
    }
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
