import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-custom';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { UsersService } from '../../users/users.service.js';
import { JwtVerifier } from '../jwt-verifier.js';
import { RevokedGrantsService } from '../../oauth-server/revoked-grants.service.js';
import { SigningKeysService } from '../../oauth-server/signing-keys.service.js';
import type { Principal } from '../principal.js';
import { credentialOf, resourceOf, type CredentialRequest } from './credential.js';
import { isolatedPassport } from './passport-instance.js';
import { TokenAuthenticator } from './token-principal.js';

/** Where an authorization server publishes its metadata (RFC 8414, then OpenID Connect Discovery). */
async function discoverJwksUri(issuer: string): Promise<string> {
  const url = new URL(issuer);
  const path = url.pathname === '/' ? '' : url.pathname;
  const candidates = [`${url.origin}/.well-known/oauth-authorization-server${path}`, `${url.origin}${path}/.well-known/openid-configuration`];
  for (const candidate of candidates) {
    const response = await fetch(candidate, { signal: AbortSignal.timeout(5_000) }).catch(() => undefined);
    if (!response?.ok) continue;
    const metadata = (await response.json().catch(() => ({}))) as { jwks_uri?: unknown };
    if (typeof metadata.jwks_uri === 'string') return metadata.jwks_uri;
  }
  throw new Error(`no jwks_uri in the metadata of ${issuer} (set MCP_OAUTH_JWKS_URL)`);
}

/**
 * `oauth2`: the resource-server half of MCP authorization. Access tokens are JWTs from the
 * configured authorization server (`MCP_OAUTH_ISSUER`), whose audience is this MCP resource
 * (`PUBLIC_URL/mcp`, or `PUBLIC_URL/mcp/<server>` for a single-server endpoint) — RFC 8707
 * resource indicators, required by the MCP authorization spec (2025-06-18+, "Token Audience
 * Binding and Validation"). Keys come from the issuer's JWKS, found by discovery.
 */
@Injectable()
export class OAuth2Strategy extends PassportStrategy(Strategy, 'oauth2') implements OnApplicationShutdown {
  private readonly tokens: TokenAuthenticator;

  constructor(@Inject(APP_CONFIG) config: AppConfig, users: UsersService, bus: ChangeBusService, keys: SigningKeysService, revocations: RevokedGrantsService) {
    super();
    const { oauth, jwt } = config.auth;
    // Gatehouse's own authorization server: its public keys in process, no network call.
    const own = config.oauthServer.enabled;
    const verifier = new JwtVerifier({
      ...(own ? { keys: keys.verifier() } : {}),
      jwks: oauth.jwksUrl ?? (() => discoverJwksUri(oauth.issuer ?? '')),
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      issuer: oauth.issuer,
      clockToleranceSec: jwt.clockToleranceSec,
      requireExp: jwt.requireExp,
    });
    const audience = { publicUrl: config.http.publicUrl, configured: oauth.audience, allowMissing: false };
    const claims = { roles: jwt.rolesClaim, groups: jwt.groupsClaim, defaultIssuer: oauth.issuer ?? '', ...(own ? { ownIssuer: config.oauthServer.issuer, ownRevocations: revocations } : {}) };
    this.tokens = new TokenAuthenticator(users, verifier, 'oauth2', claims, audience, bus);
  }

  onApplicationShutdown(): void {
    this.tokens.dispose();
  }

  getPassportInstance() {
    return isolatedPassport;
  }

  /** The token's principal: synchronous when it is cached (see {@link TokenAuthenticator.principalFor}); throws or rejects with the refusal. */
  validate(req: CredentialRequest): Principal | Promise<Principal> {
    return this.tokens.principalFor(credentialOf(req, 'jwt').value, resourceOf(req));
  }
}
