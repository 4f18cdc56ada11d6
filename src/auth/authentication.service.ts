import { Inject, Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { BlockList, isIPv4 } from 'node:net';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ApiKeysService } from '../api-keys/api-keys.service.js';
import { looksLikeGatehouseKey } from '../api-keys/api-key-format.js';
import { InvalidTokenError, type RequestResource } from './jwt-verifier.js';
import type { Principal } from './principal.js';
import { ApiKeyStrategy } from './strategies/api-key.strategy.js';
import { BearerStrategy } from './strategies/bearer.strategy.js';
import type { Credential, CredentialRequest, StrategyName } from './strategies/credential.js';
import { OAuth2Strategy } from './strategies/oauth2.strategy.js';
import { TrustedHeaderStrategy } from './strategies/trusted-header.strategy.js';

/** Query parameters that look like credentials: refused, never read (they end up in logs and histories). */
const QUERY_CREDENTIALS = ['access_token', 'token', 'api_key', 'apikey', 'api-key', 'key', 'jwt', 'id_token'];
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const BEARER = /^Bearer +([\x21-\x7e]+) *$/i;
/** Entries of {@link AuthenticationService}'s memos (verified JWT headers, request resources), oldest dropped first. */
const MAX_MEMO = 10_000;
const MAX_RESOURCES = 1_000;
/**
 * Longest request URL whose resource is remembered, characters. The memo is filled before the
 * token is verified (any JWT-shaped bearer), so an unbounded key would let refused requests pin
 * MAX_RESOURCES × the longest URL Node accepts (~16 KB each: a query string is not limited);
 * the URLs that recur (`/mcp`, `/mcp/<server>`, admin routes) are far shorter.
 */
const MAX_RESOURCE_URL = 256;
/**
 * How long a verified JWT's classification stays remembered after it entered, ms: a bearer
 * token does not sit in the heap for a client that stopped using it (as the session-token memo,
 * docs/architecture.md "Sessions"); one in use is classified again once a minute.
 */
export const JWT_MEMO_MS = 60_000;

/** What the challenge of a 401/403 should say (RFC 6750 §3, RFC 9728 §5.1). */
export interface Challenge {
  error?: 'invalid_token' | 'invalid_request' | 'insufficient_scope';
  description?: string;
}

/** A path segment in canonical form (percent-decoded, then encoded as `encodeURIComponent` does). */
function canonicalSegment(segment: string): string {
  try {
    return encodeURIComponent(decodeURIComponent(segment));
  } catch {
    return segment;
  }
}

/**
 * The protected resource a request for `url` targets (RFC 8707 §2, RFC 9728 §3):
 * `/mcp` → `PUBLIC_URL/mcp`; `/mcp/<server>` → `PUBLIC_URL/mcp/<server>` (a token for the
 * whole `PUBLIC_URL/mcp` is accepted there too); anything else (the admin API) →
 * `PUBLIC_URL/api`. `publicUrl` has no trailing slash.
 */
export function requestResource(publicUrl: string, url: string): RequestResource {
  const path = url.split('?')[0];
  const mcp = `${publicUrl}/mcp`;
  const scoped = /^\/mcp(?:\/([^/]+))?\/?$/.exec(path);
  if (!scoped) return { resource: `${publicUrl}/api`, accepts: [`${publicUrl}/api`] };
  if (scoped[1] === undefined) return { resource: mcp, accepts: [mcp] };
  const server = `${mcp}/${canonicalSegment(scoped[1])}`;
  return { resource: server, accepts: [server, mcp] };
}

/** Where a client finds out how to authenticate for `url` (RFC 9728 §3.1: path-specific metadata). */
export function resourceMetadataUrl(publicUrl: string, url: string): string {
  const resource = requestResource(publicUrl, url).resource;
  return `${publicUrl}/.well-known/oauth-protected-resource${resource.slice(publicUrl.length)}`;
}

/**
 * The credential header that occurs more than once in the raw request (Node keeps only the first
 * `Authorization`), `Authorization` before `X-API-Key`; undefined when neither repeats. One pass
 * over the raw headers.
 */
function repeatedCredentialHeader(request: FastifyRequest): 'Authorization' | 'X-API-Key' | undefined {
  const raw = request.raw.rawHeaders;
  let authorization = 0;
  let apiKey = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i];
    if (name.length === 13 && name.toLowerCase() === 'authorization') authorization++;
    else if (name.length === 9 && name.toLowerCase() === 'x-api-key') apiKey++;
  }
  return authorization > 1 ? 'Authorization' : apiKey > 1 ? 'X-API-Key' : undefined;
}

const quote = (s: string) => `"${s.replace(/["\\]/g, '')}"`;

/** A 401 (or 400/403) with its `WWW-Authenticate` challenge. */
export function authError(config: AppConfig, request: FastifyRequest, status: 400 | 401 | 403, message: string, challenge: Challenge = {}): AppError {
  // With API keys only (no authorization server, ours or MCP_OAUTH_ISSUER, and no JWTs) there is
  // no OAuth to discover: no resource_metadata, so clients do not start a flow that cannot succeed.
  const oauth = config.auth.strategies.includes('oauth2') || config.auth.strategies.includes('bearer');
  const parts = oauth ? [`resource_metadata=${quote(resourceMetadataUrl(config.http.publicUrl, request.url))}`] : ['realm="gatehouse"'];
  const isMcp = /^\/mcp(\/|\?|$)/.test(request.url);
  if (isMcp || challenge.error === 'insufficient_scope') parts.push(`scope=${quote(challenge.error === 'insufficient_scope' ? 'admin:read admin:write mcp servers:write' : 'mcp')}`);
  if (challenge.error) parts.push(`error=${quote(challenge.error)}`);
  if (challenge.description) parts.push(`error_description=${quote(challenge.description)}`);
  const code = status === 401 ? ErrorCode.Unauthorized : status === 403 ? ErrorCode.Forbidden : ErrorCode.BadRequest;
  return new AppError(code, message, { headers: { 'www-authenticate': `Bearer ${parts.join(', ')}` } });
}

type StrategyResult = Principal | false | null | undefined;

/** What {@link AuthenticationService} calls of a strategy: passport-custom's verify, `validate(req)` (synchronous or not). */
interface CredentialStrategy {
  validate(req: CredentialRequest): StrategyResult | Promise<StrategyResult>;
}

/** A strategy's failure as an Error (passport strategies may throw anything). */
const asError = (error: unknown): Error => (error instanceof Error ? error : new Error('authentication failed'));

/** A strategy's user: a falsy one is "the credentials are not valid". */
function accepted(user: StrategyResult): Principal {
  if (!user) throw new InvalidTokenError('the credentials are not valid');
  return user;
}

/**
 * Turns a request's credentials into a {@link Principal}. The credential's shape picks the
 * strategy — an `X-API-Key` header or a `gatehouse_…`/static key is `api_key`, a JWT is
 * `bearer` or `oauth2` (by its issuer when both are on), identity headers from a trusted proxy
 * are `trusted_header` — and that one strategy's `validate` runs. The strategies are passport
 * strategies (`passport-custom`), but are called directly: with the strategy already chosen,
 * passport's `authenticate` only added a middleware closure, a strategy object and its
 * callbacks per request (about a tenth of a cached API-key check), and its outcomes map one to
 * one — a principal; a falsy user → 401 "the credentials are not valid"; an error as thrown.
 * Adding a strategy: one class (like {@link ApiKeyStrategy}) and one line in the constructor
 * (see docs/auth.md).
 */
@Injectable()
export class AuthenticationService {
  private readonly strategies = new Map<StrategyName, CredentialStrategy>();
  private readonly enabled: Set<string>;
  private readonly trusted = new BlockList();
  /**
   * `Authorization` header → how it was classified, for JWTs that were verified once: the
   * classification is a pure function of the header and of the configuration (the bearer
   * regex, the key shape, the HMAC against MCP_API_KEYS, the unverified `iss`), and costs more
   * than a cached verification. It grants nothing: the strategy still checks the token (its
   * cached principal lives no longer than `exp`, its audience and revocation are checked per
   * request). Only verified tokens enter, so a flood of garbage cannot grow it; bounded.
   */
  private readonly verifiedJwts = new Map<string, { found: readonly [StrategyName, Credential][]; until: number }>();
  /** Wall clock of {@link verifiedJwts}' bound ({@link JWT_MEMO_MS}), ms since the epoch; tests replace it. */
  memoClock: () => number = Date.now;
  /** `request.url` → its resource ({@link requestResource}, pure in the URL); bounded. */
  private readonly resources = new Map<string, RequestResource>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly apiKeys: ApiKeysService,
    bearer: BearerStrategy,
    oauth2: OAuth2Strategy,
    apiKey: ApiKeyStrategy,
    trustedHeader: TrustedHeaderStrategy,
  ) {
    this.enabled = new Set(config.auth.strategies);
    for (const [name, strategy] of [
      ['bearer', bearer],
      ['oauth2', oauth2],
      ['api_key', apiKey],
      ['trusted_header', trustedHeader],
    ] as const) {
      if (this.enabled.has(name)) this.strategies.set(name, strategy);
    }
    for (const entry of config.auth.trustedProxies) {
      const [address, bits] = entry.split('/');
      const family = isIPv4(address) ? 'ipv4' : 'ipv6';
      if (bits === undefined) this.trusted.addAddress(address, family);
      else this.trusted.addSubnet(address, Number(bits), family);
    }
  }

  /** True when `none` is the only strategy: credentials are not looked at. */
  get open(): boolean {
    return this.enabled.size === 1 && this.enabled.has('none');
  }

  /**
   * The principal for the request's credentials; null when it carries none. Rejects with
   * 400/401/403. Ambiguous credentials are refused with 400 `invalid_request`, never resolved
   * by picking one: two `Authorization` or two `X-API-Key` headers, or an `X-API-Key` and an
   * `Authorization: Bearer` that authenticate as different principals (the same key in both is
   * fine). JWT audiences are checked against the request's resource ({@link requestResource}).
   */
  async authenticate(request: FastifyRequest): Promise<Principal | null> {
    return this.principalOf(request);
  }

  /**
   * {@link authenticate} without a promise when none is needed: synchronous when the
   * credential's check is (an API key whose hash, record and owner are in memory) — the
   * principal or null, refusals thrown —, otherwise a promise of the same (refusals rejected).
   * The guard calls this: a fast path of about a dozen fewer promises per request.
   */
  principalOf(request: FastifyRequest): Principal | null | Promise<Principal | null> {
    if (this.open) return null;
    const found = this.classify(request);
    if (found.length === 0) return null;
    // Only JWT audiences are checked against the resource: an API key or a proxy's identity needs none.
    const resource = found[0][1].kind === 'jwt' || found[1]?.[1].kind === 'jwt' ? this.resourceOf(request.url) : undefined;
    const first = this.verifyOne(request, found[0], resource);
    if (found.length === 1) return found[0][1].kind === 'jwt' && !Object.isFrozen(found) ? this.remember(request, found, first) : first;
    return this.sameForBoth(request, first, found[1], resource);
  }

  /** Enters a single JWT credential's classification into {@link verifiedJwts} once its verification succeeds. */
  private remember(request: FastifyRequest, found: readonly [StrategyName, Credential][], verifying: Principal | Promise<Principal>): Principal | Promise<Principal> {
    const header = request.headers.authorization;
    const credential = found[0][1];
    const token = credential.kind === 'jwt' ? credential.value : undefined;
    const store = () => {
      // Only the plain form, `Bearer <token>` (one space, none after; the scheme in any case): the
      // regex also takes padded forms, each a distinct key, and one valid token sent with up to
      // ~16 KB of spaces in as many paddings would fill the memo (MAX_MEMO × 16 KB). Others are
      // classified each time, as before the memo.
      if (typeof header !== 'string' || token === undefined || header.length !== token.length + 7) return;
      if (this.verifiedJwts.size >= MAX_MEMO) this.verifiedJwts.delete(this.verifiedJwts.keys().next().value as string);
      Object.freeze(found[0][1]);
      Object.freeze(found[0]);
      this.verifiedJwts.set(header, { found: Object.freeze(found), until: this.memoClock() + JWT_MEMO_MS });
    };
    if (!(verifying instanceof Promise)) {
      store();
      return verifying;
    }
    return verifying.then((principal) => {
      store();
      return principal;
    });
  }

  /** The remembered classification of a verified JWT's `Authorization` header, or undefined (never entered, or entered {@link JWT_MEMO_MS} ago: then forgotten). */
  private rememberedJwt(header: string): readonly [StrategyName, Credential][] | undefined {
    const memo = this.verifiedJwts.get(header);
    if (memo === undefined) return undefined;
    if (memo.until > this.memoClock()) return memo.found;
    this.verifiedJwts.delete(header);
    return undefined;
  }

  /** {@link requestResource} of `url`, memoized (the same few URLs come again and again) up to {@link MAX_RESOURCE_URL} characters. */
  private resourceOf(url: string): RequestResource {
    if (url.length > MAX_RESOURCE_URL) return requestResource(this.config.http.publicUrl, url);
    let resource = this.resources.get(url);
    if (resource === undefined) {
      resource = requestResource(this.config.http.publicUrl, url);
      Object.freeze(resource.accepts);
      if (this.resources.size >= MAX_RESOURCES) this.resources.delete(this.resources.keys().next().value as string);
      this.resources.set(url, Object.freeze(resource));
    }
    return resource;
  }

  /** An X-API-Key and a bearer token: both verified (in that order), and they must name one principal. */
  private async sameForBoth(
    request: FastifyRequest,
    verifying: Principal | Promise<Principal>,
    other: [StrategyName, Credential],
    resource: RequestResource | undefined,
  ): Promise<Principal> {
    const first = await verifying;
    const second = await this.verifyOne(request, other, resource);
    if (second.id !== first.id) {
      throw authError(this.config, request, 400, 'X-API-Key and Authorization name different principals; send one credential', {
        error: 'invalid_request',
        description: 'X-API-Key and Authorization name different principals',
      });
    }
    return first;
  }

  /** `resource`: the request's, when the credential is a JWT (audiences are checked against it). */
  private verifyOne(request: FastifyRequest, [strategy, credential]: [StrategyName, Credential], resource: RequestResource | undefined): Principal | Promise<Principal> {
    try {
      // Strategies get a small object of their own, not the Fastify request: passport decorates
      // what it is given (req.login, …), and reshaping every request object slows the rest of
      // the request pipeline.
      const principal = this.run(strategy, { credential, resource });
      return principal instanceof Promise ? principal.catch((error: unknown) => this.refused(request, error)) : principal;
    } catch (error) {
      return this.refused(request, error);
    }
  }

  /** A strategy's refusal as thrown to the client: {@link InvalidTokenError} becomes a 401 `invalid_token`, anything else as it is. */
  private refused(request: FastifyRequest, error: unknown): never {
    if (error instanceof InvalidTokenError) {
      throw authError(this.config, request, 401, `Unauthorized: ${error.message}`, { error: 'invalid_token', description: error.message });
    }
    throw error;
  }

  private run(name: StrategyName, request: CredentialRequest): Principal | Promise<Principal> {
    const strategy = this.strategies.get(name);
    // classify() only yields enabled strategies.
    if (!strategy) throw new Error(`strategy ${name} is not enabled`);
    let user: StrategyResult | Promise<StrategyResult>;
    try {
      user = strategy.validate(request);
    } catch (error) {
      throw asError(error);
    }
    return user instanceof Promise ? user.then(accepted, (error: unknown) => Promise.reject(asError(error))) : accepted(user);
  }

  /** The request's credentials: none, one, or an X-API-Key and a bearer token to compare. */
  private classify(request: FastifyRequest): readonly [StrategyName, Credential][] {
    const query = request.query as Record<string, unknown> | undefined;
    const inQuery = query && typeof query === 'object' ? QUERY_CREDENTIALS.find((k) => k in query) : undefined;
    if (inQuery) {
      throw authError(
        this.config,
        request,
        400,
        `credentials in the query string ("${inQuery}") are never accepted; send them in the Authorization: Bearer or X-API-Key header`,
        { error: 'invalid_request' },
      );
    }
    const header = repeatedCredentialHeader(request);
    if (header) {
      throw authError(this.config, request, 400, `more than one ${header} header; send one credential`, {
        error: 'invalid_request',
        description: `more than one ${header} header`,
      });
    }
    const found: [StrategyName, Credential][] = [];
    const apiKeyHeader = request.headers['x-api-key'];
    if (typeof apiKeyHeader === 'string' && apiKeyHeader !== '') {
      if (!this.enabled.has('api_key')) throw this.notAccepted(request, 'API keys are not accepted here (MCP_AUTH_STRATEGY does not include api_key)');
      found.push(['api_key', { kind: 'api_key', value: apiKeyHeader.trim() }]);
    }
    const authorization = request.headers.authorization;
    const known = typeof authorization === 'string' ? this.rememberedJwt(authorization) : undefined;
    if (known) {
      if (found.length === 0) return known;
      found.push(known[0]);
    } else if (typeof authorization === 'string' && authorization !== '') {
      const token = BEARER.exec(authorization)?.[1];
      // Beside an X-API-Key, a non-Bearer Authorization (e.g. Basic for a proxy in front) is not ours.
      if (token) found.push(this.classifyBearer(request, token));
      else if (found.length === 0) throw authError(this.config, request, 401, 'Unauthorized: expected "Authorization: Bearer <token>"', { error: 'invalid_request' });
    }
    if (found.length > 0) return found;
    if (this.enabled.has('trusted_header')) {
      const user = request.headers['x-forwarded-user'];
      if (typeof user === 'string' && user.trim() !== '' && this.fromTrustedProxy(request)) {
        const header = (name: string) => {
          const v = request.headers[name];
          return typeof v === 'string' && v.trim() !== '' ? v.trim() : null;
        };
        const groups = (header('x-forwarded-groups') ?? '').split(',').map((g) => g.trim()).filter(Boolean);
        return [['trusted_header', { kind: 'trusted_header', user: user.trim().slice(0, 320), email: header('x-forwarded-email'), groups }]];
      }
    }
    return [];
  }

  /**
   * Which strategy a bearer token is for, by its shape: a Gatehouse key (`gatehouse_…`) or one of
   * MCP_API_KEYS is an API key, a JWT-shaped token is a JWT. A token of a kind this gateway does
   * not accept — a JWT where only API keys are, an API key where none are, or something that is
   * neither — is refused as what it is, with what the gateway accepts instead (never "the API key
   * is not valid" for a JWT).
   */
  private classifyBearer(request: FastifyRequest, token: string): [StrategyName, Credential] {
    const keys = this.enabled.has('api_key');
    const bearer = this.enabled.has('bearer');
    const oauth2 = this.enabled.has('oauth2');
    const gatehouseKey = looksLikeGatehouseKey(token);
    if (keys && gatehouseKey) return ['api_key', { kind: 'api_key', value: token }];
    // One of MCP_API_KEYS (hashed to check only when some are set), whatever its shape.
    const staticKey = keys && this.apiKeys.isStaticKey(token);
    if (staticKey) return ['api_key', { kind: 'api_key', value: token }];
    const jwt = JWT_SHAPE.test(token);
    if (jwt && (bearer || oauth2)) {
      const strategy = bearer && oauth2 ? (this.unverifiedIssuer(token) === this.config.auth.oauth.issuer ? 'oauth2' : 'bearer') : bearer ? 'bearer' : 'oauth2';
      return [strategy, { kind: 'jwt', value: token }];
    }
    if (jwt) throw this.notAccepted(request, 'the bearer token is a JWT, and JWTs are not accepted here');
    if (gatehouseKey) throw this.notAccepted(request, 'the bearer token is an API key, and API keys are not accepted here (MCP_AUTH_STRATEGY does not include api_key)');
    throw this.notAccepted(request, keys ? 'the bearer token is neither a Gatehouse API key nor a JWT' : 'the bearer token is not a JWT');
  }

  /** What this gateway accepts, for the messages of refused credentials. */
  private accepted(): string {
    const kinds: string[] = [];
    if (this.enabled.has('api_key')) kinds.push('an API key in the X-API-Key header (or as Authorization: Bearer <key>)');
    if (this.enabled.has('oauth2') || this.enabled.has('bearer')) kinds.push('a JWT access token as Authorization: Bearer <token>');
    if (this.enabled.has('trusted_header')) kinds.push('identity headers from a trusted proxy');
    return kinds.join(', or ');
  }

  /** A 401 for a credential of a kind this gateway does not take: says why, and what it takes instead. */
  private notAccepted(request: FastifyRequest, why: string): AppError {
    const accepted = this.accepted();
    const message = accepted ? `${why}; send ${accepted}` : why;
    return authError(this.config, request, 401, `Unauthorized: ${message}`, { error: 'invalid_token', description: why });
  }

  /** `iss` read without verification, only to pick which verifier checks the token. */
  private unverifiedIssuer(token: string): string | undefined {
    try {
      const payload = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8')) as { iss?: unknown };
      return typeof payload.iss === 'string' ? payload.iss.replace(/\/+$/, '') : undefined;
    } catch {
      return undefined;
    }
  }

  /** The direct peer, not a forwarded address: only the proxy's own connection is trusted. */
  private fromTrustedProxy(request: FastifyRequest): boolean {
    const raw = request.raw.socket.remoteAddress;
    if (!raw) return false;
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(raw);
    const address = mapped ? mapped[1] : raw;
    return this.trusted.check(address, isIPv4(address) ? 'ipv4' : 'ipv6');
  }
}
