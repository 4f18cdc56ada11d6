import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-custom';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { UsersService } from '../../users/users.service.js';
import { JwtVerifier } from '../jwt-verifier.js';
import type { Principal } from '../principal.js';
import { credentialOf, type CredentialRequest } from './credential.js';
import { isolatedPassport } from './passport-instance.js';
import { TokenPrincipalCache, principalFromToken } from './token-principal.js';

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
export class OAuth2Strategy extends PassportStrategy(Strategy, 'oauth2') {
  private readonly verifier: JwtVerifier;
  private readonly principals: TokenPrincipalCache;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly users: UsersService,
  ) {
    super();
    this.principals = new TokenPrincipalCache(users);
    const { oauth, jwt } = config.auth;
    const resourceBase = `${config.http.publicUrl}/mcp/`;
    this.verifier = new JwtVerifier({
      jwks: oauth.jwksUrl ?? (() => discoverJwksUri(oauth.issuer ?? '')),
      algorithms: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'],
      issuer: oauth.issuer,
      audience: oauth.audience,
      audienceMatches: (aud) => aud.startsWith(resourceBase) && !aud.slice(resourceBase.length).includes('/'),
      clockToleranceSec: jwt.clockToleranceSec,
    });
  }

  getPassportInstance() {
    return isolatedPassport;
  }

  async validate(req: CredentialRequest): Promise<Principal> {
    const token = credentialOf(req, 'jwt').value;
    const cached = this.principals.get(token);
    if (cached) return cached;
    const version = this.users.version;
    const payload = await this.verifier.verify(token);
    const { rolesClaim, groupsClaim } = this.config.auth.jwt;
    const principal = await principalFromToken(this.users, payload, 'oauth2', { roles: rolesClaim, groups: groupsClaim, defaultIssuer: this.config.auth.oauth.issuer ?? '' });
    this.principals.set(token, principal, payload, version);
    return principal;
  }
}
