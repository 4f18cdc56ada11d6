import { Module } from '@nestjs/common';
import { UsersModule } from '../users/users.module.js';
import { MyGrantsController, UserGrantsController } from './grants.controller.js';
import { GrantsService } from './grants.service.js';
import { OAuthAdminController } from './oauth-admin.controller.js';
import { OAuthProviderService } from './oauth-provider.service.js';
import { SIGNED_IN_USER_RESOLVER, SignedInUserSlot } from './signed-in-user.js';
import { OAuthKeysModule } from './oauth-keys.module.js';

/**
 * Gatehouse as the OAuth 2.1 authorization server (issue 13): oidc-provider mounted by
 * `installOAuthServer` (bootstrap), the consent and device pages, approvals, the admin API.
 * `SIGNED_IN_USER_RESOLVER` defaults to {@link SignedInUserSlot} (nobody signed in); the login module binds its
 * `BrowserSessionService` (tests bind their own).
 */
@Module({
  imports: [UsersModule, OAuthKeysModule],
  controllers: [MyGrantsController, UserGrantsController, OAuthAdminController],
  providers: [OAuthProviderService, GrantsService, { provide: SIGNED_IN_USER_RESOLVER, useClass: SignedInUserSlot }],
  exports: [OAuthProviderService, SIGNED_IN_USER_RESOLVER],
})
export class OAuthServerModule {}
