import { Module } from '@nestjs/common';
import { UsersModule } from '../users/users.module.js';
import { MyGrantsController, UserGrantsController } from './grants.controller.js';
import { GrantsService } from './grants.service.js';
import { OAuthAdminController } from './oauth-admin.controller.js';
import { OAuthProviderService } from './oauth-provider.service.js';
import { SIGNED_IN_USER_RESOLVER, SignedInUserSlot } from './signed-in-user.js';
import { OAuthKeysModule } from './oauth-keys.module.js';
import { KeyRotationService, OAUTH_CLOCK } from './key-rotation.service.js';
import { systemClock } from '../upstreams/clock.js';
import { BrowserSessionService } from '../login/browser-session.service.js';
import { LoginModule } from '../login/login.module.js';

/**
 * Gatehouse as the OAuth 2.1 authorization server (issue 13): oidc-provider mounted by
 * `installOAuthServer` (bootstrap), the consent and device pages, approvals, the admin API.
 * Signing keys rotate on schedule when GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL is set ({@link KeyRotationService}).
 * `SIGNED_IN_USER_RESOLVER` is a {@link SignedInUserSlot} holding the login module's
 * `BrowserSessionService` (the person signed in to Gatehouse in this browser); tests may swap in their own.
 */
@Module({
  imports: [UsersModule, OAuthKeysModule, LoginModule],
  controllers: [MyGrantsController, UserGrantsController, OAuthAdminController],
  providers: [OAuthProviderService, GrantsService, KeyRotationService, { provide: OAUTH_CLOCK, useValue: systemClock }, {
      provide: SIGNED_IN_USER_RESOLVER,
      useFactory: (sessions: BrowserSessionService) => {
        const slot = new SignedInUserSlot();
        slot.use(sessions);
        return slot;
      },
      inject: [BrowserSessionService],
    }],
  exports: [OAuthProviderService, SIGNED_IN_USER_RESOLVER],
})
export class OAuthServerModule {}
