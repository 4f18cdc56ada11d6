import { Inject, Injectable } from '@nestjs/common';
import { PassportStrategy } from '@nestjs/passport';
import { Strategy } from 'passport-custom';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { AppError } from '../../common/errors/app-error.js';
import { ErrorCode } from '../../common/errors/error-code.js';
import { UsersService, userPrincipalId } from '../../users/users.service.js';
import { permissionsFor, type Principal } from '../principal.js';
import { credentialOf, type CredentialRequest } from './credential.js';
import { isolatedPassport } from './passport-instance.js';

/** The issuer recorded for users vouched for by an authenticating proxy. */
export const TRUSTED_HEADER_ISSUER = 'trusted-header';

/**
 * `trusted_header`: behind an authenticating proxy (oauth2-proxy, an ingress with external
 * auth), identity comes from `X-Forwarded-User` / `-Email` / `-Groups`. The guard reads those
 * headers only when the connection comes from `AUTH_TRUSTED_PROXIES`; from anywhere else they
 * are ignored, so a client cannot claim an identity by sending them.
 */
@Injectable()
export class TrustedHeaderStrategy extends PassportStrategy(Strategy, 'trusted_header') {
  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly users: UsersService,
  ) {
    super();
  }

  getPassportInstance() {
    return isolatedPassport;
  }

  async validate(req: CredentialRequest): Promise<Principal> {
    const { user: subject, email, groups } = credentialOf(req, 'trusted_header');
    const user = await this.users.resolve({ issuer: TRUSTED_HEADER_ISSUER, subject, email, displayName: email ?? subject, groups });
    if (user.disabled) throw new AppError(ErrorCode.Forbidden, 'this user is disabled; ask an administrator');
    return {
      userId: user.id,
      id: userPrincipalId(user.id),
      displayName: email ?? subject,
      email,
      roles: user.roles,
      groups,
      scopes: permissionsFor(user.roles),
      method: 'trusted_header',
      keyId: null,
    };
  }
}
