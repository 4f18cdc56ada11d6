import { Module } from '@nestjs/common';
import { UsersModule } from '../users/users.module.js';
import { systemClock } from '../upstreams/clock.js';
import { BrowserSessionService } from './browser-session.service.js';
import { LocalAccountsController } from './local-accounts.controller.js';
import { LocalAccountsService } from './local-accounts.service.js';
import { LOGIN_CLOCK } from './login-clock.js';
import { LoginController } from './login.controller.js';
import { LoginFlowStore } from './login-flow.store.js';
import { LoginProvidersService } from './login-providers.service.js';
import { LoginThrottleService } from './login-throttle.service.js';
import { LoginUsersService } from './login-users.service.js';

/**
 * Sign-in (issue 13): identity providers (OIDC, plain OAuth2), local passwords, browser sessions
 * and the login pages. Exports {@link BrowserSessionService} (the contract with the
 * authorization server: `current(request)`, `loginUrl(returnTo)`).
 */
@Module({
  imports: [UsersModule],
  controllers: [LoginController, LocalAccountsController],
  providers: [
    { provide: LOGIN_CLOCK, useValue: systemClock },
    BrowserSessionService,
    LoginFlowStore,
    LoginProvidersService,
    LoginThrottleService,
    LoginUsersService,
    LocalAccountsService,
  ],
  exports: [BrowserSessionService],
})
export class LoginModule {}
