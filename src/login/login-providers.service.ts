import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { BrowserSessionService } from './browser-session.service.js';
import { LoginFailure } from './login-failure.js';
import { LoginFlowStore } from './login-flow.store.js';
import type { LoginProvider } from './providers/login-provider.js';
import { OAuth2Login } from './providers/oauth2-login.js';
import { OidcLogin } from './providers/oidc-login.js';

/**
 * The identity providers people may sign in with (`GATEHOUSE_LOGIN_PROVIDERS`, plus the seed's
 * `MCP_OAUTH_CLIENT_ID`/`…_AUTH_URL`/`…_TOKEN_URL`/`…_USERINFO_URL` as provider `oauth`), in the
 * configured order, each with its callback URL (`callbackUrl`, default `PUBLIC_URL/login/<key>/callback`).
 */
@Injectable()
export class LoginProvidersService {
  private readonly providers = new Map<string, LoginProvider>();
  readonly localEnabled: boolean;

  constructor(@Inject(APP_CONFIG) config: AppConfig, flows: LoginFlowStore, sessions: BrowserSessionService) {
    this.localEnabled = config.login.localEnabled;
    for (const provider of config.login.providers) {
      const callbackUrl = provider.callbackUrl ?? `${config.http.publicUrl}/login/${provider.key}/callback`;
      this.providers.set(
        provider.key,
        provider.type === 'oidc' ? new OidcLogin(provider, callbackUrl, flows, sessions.isSecure) : new OAuth2Login(provider, callbackUrl, flows, sessions.isSecure),
      );
    }
  }

  /** Every provider, in configuration order. */
  list(): LoginProvider[] {
    return [...this.providers.values()];
  }

  /** The provider with `key`; throws {@link LoginFailure} `unknown_provider` (404). */
  get(key: string): LoginProvider {
    const provider = this.providers.get(key);
    if (!provider) throw new LoginFailure('unknown_provider', 404, 'There is no such sign-in option. Please pick one below.');
    return provider;
  }
}
