import { Module } from '@nestjs/common';
import { ApiKeysModule } from '../api-keys/api-keys.module.js';
import { UsersModule } from '../users/users.module.js';
import { OAuthKeysModule } from '../oauth-server/oauth-keys.module.js';
import { AuthenticationService } from './authentication.service.js';
import { MeController } from './me.controller.js';
import { ProtectedResourceController } from './protected-resource.controller.js';
import { ApiKeyStrategy } from './strategies/api-key.strategy.js';
import { BearerStrategy } from './strategies/bearer.strategy.js';
import { OAuth2Strategy } from './strategies/oauth2.strategy.js';
import { TrustedHeaderStrategy } from './strategies/trusted-header.strategy.js';

/** Authentication strategies (passport), the guard's service, `/api/v1/me`, RFC 9728 metadata. */
@Module({
  imports: [UsersModule, ApiKeysModule, OAuthKeysModule],
  controllers: [MeController, ProtectedResourceController],
  providers: [AuthenticationService, BearerStrategy, OAuth2Strategy, ApiKeyStrategy, TrustedHeaderStrategy],
  exports: [AuthenticationService],
})
export class AuthModule {}
