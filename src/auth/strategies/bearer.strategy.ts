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

/**
 * `bearer`: JWTs from the team's identity provider or any issuer the operator trusts, HMAC
 * (`MCP_JWT_SECRET`) or public-key (`MCP_JWT_JWKS_URL`).
 */
@Injectable()
export class BearerStrategy extends PassportStrategy(Strategy, 'bearer') {
  private readonly verifier: JwtVerifier;
  private readonly principals: TokenPrincipalCache;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly users: UsersService,
  ) {
    super();
    this.principals = new TokenPrincipalCache(users);
    const jwt = config.auth.jwt;
    this.verifier = new JwtVerifier({
      secret: jwt.secret,
      jwks: jwt.jwksUrl,
      algorithms: jwt.algorithms,
      issuer: jwt.issuer,
      audience: jwt.audience,
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
    const { rolesClaim, groupsClaim, issuer } = this.config.auth.jwt;
    const principal = await principalFromToken(this.users, payload, 'bearer', { roles: rolesClaim, groups: groupsClaim, defaultIssuer: issuer ?? 'jwt' });
    this.principals.set(token, principal, payload, version);
    return principal;
  }
}
