import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-custom';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { UsersService } from '../../users/users.service.js';
import { JwtVerifier } from '../jwt-verifier.js';
import type { Principal } from '../principal.js';
import { credentialOf, resourceOf, type CredentialRequest } from './credential.js';
import { isolatedPassport } from './passport-instance.js';
import { TokenAuthenticator } from './token-principal.js';

/**
 * `bearer`: JWTs from the team's identity provider or any issuer the operator trusts, HMAC
 * (`MCP_JWT_SECRET`) or public-key (`MCP_JWT_JWKS_URL`). Audience: an `MCP_JWT_AUDIENCE` value
 * (any route), or the resource the request targets (`PUBLIC_URL/api`, `PUBLIC_URL/mcp`,
 * `PUBLIC_URL/mcp/<server>`); no `aud` at all only when `MCP_JWT_AUDIENCE` is unset.
 */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') implements OnApplicationShutdown {
  private readonly tokens: TokenAuthenticator;

  constructor(@Inject(APP_CONFIG) config: AppConfig, users: UsersService, bus: ChangeBusService) {
    super();
    const jwt = config.auth.jwt;
    const verifier = new JwtVerifier({
      secret: jwt.secret,
      jwks: jwt.jwksUrl,
      algorithms: jwt.algorithms,
      issuer: jwt.issuer,
      clockToleranceSec: jwt.clockToleranceSec,
      requireExp: jwt.requireExp,
    });
    // MCP_JWT_AUDIENCE values are accepted on every route (as before); without any, a token
    // without `aud` is accepted, and one with `aud` must name the request's resource.
    const audience = { publicUrl: config.http.publicUrl, configured: jwt.audience ?? [], allowMissing: !jwt.audience?.length };
    this.tokens = new TokenAuthenticator(users, verifier, 'bearer', { roles: jwt.rolesClaim, groups: jwt.groupsClaim, defaultIssuer: jwt.issuer ?? 'jwt' }, audience, bus);
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
