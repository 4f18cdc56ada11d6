import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-custom';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { UsersService } from '../../users/users.service.js';
import { JwtVerifier } from '../jwt-verifier.js';
import type { Principal } from '../principal.js';
import { credentialOf, type CredentialRequest } from './credential.js';
import { isolatedPassport } from './passport-instance.js';
import { TokenAuthenticator } from './token-principal.js';

/**
 * `bearer`: JWTs from the team's identity provider or any issuer the operator trusts, HMAC
 * (`MCP_JWT_SECRET`) or public-key (`MCP_JWT_JWKS_URL`).
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
      audience: jwt.audience,
      clockToleranceSec: jwt.clockToleranceSec,
    });
    this.tokens = new TokenAuthenticator(users, verifier, 'bearer', { roles: jwt.rolesClaim, groups: jwt.groupsClaim, defaultIssuer: jwt.issuer ?? 'jwt' }, bus);
  }

  onApplicationShutdown(): void {
    this.tokens.dispose();
  }

  getPassportInstance() {
    return isolatedPassport;
  }

  validate(req: CredentialRequest): Promise<Principal> {
    return this.tokens.authenticate(credentialOf(req, 'jwt').value);
  }
}
