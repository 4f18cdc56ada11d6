import { Module, type DynamicModule, type ModuleMetadata } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { AuthGuard } from './auth/auth.guard.js';
import { ApiKeysModule } from './api-keys/api-keys.module.js';
import { AuthModule } from './auth/auth.module.js';
import type { Logger } from 'pino';
import { AllExceptionsFilter } from './common/http/all-exceptions.filter.js';
import { RequestLoggingModule } from './common/logging/request-logging.js';
import { ConfigModule } from './config/config.module.js';
import type { AppConfig } from './config/config.schema.js';
import { DatabaseModule } from './database/database.module.js';
import { HealthModule } from './health/health.module.js';
import { McpModule } from './mcp/mcp.module.js';
import { UpstreamOAuthModule } from './upstream-oauth/upstream-oauth.module.js';
import { UpstreamConnectModule } from './upstream-connect/upstream-connect.module.js';
import { UpstreamsModule } from './upstreams/upstreams.module.js';
import { UsersModule } from './users/users.module.js';
import { OAuthServerModule } from './oauth-server/oauth-server.module.js';
import { LoginModule } from './login/login.module.js';
import { RateLimitModule } from './rate-limit/rate-limit.module.js';
import { RateLimitAddressGuard, RateLimitPrincipalGuard } from './rate-limit/rate-limit.guard.js';

/**
 * The global guards, in the order they run (registered as `APP_GUARD`s): the address budget
 * before authenticating, then authentication and permissions, then the principal's budget.
 * Each is also a provider by its class, so the MCP lane (`src/mcp/edge/lane.ts`) runs the very
 * instances Nest runs for every other route.
 */
export const GLOBAL_GUARDS = [RateLimitAddressGuard, AuthGuard, RateLimitPrincipalGuard] as const;
/** The global exception filter (`APP_FILTER`), also a provider by its class for the MCP lane. */
export const GLOBAL_FILTER = AllExceptionsFilter;

export interface AppModuleOptions {
  config: AppConfig;
  logger: Logger;
  /** Extra modules (tests mount probes here). */
  imports?: ModuleMetadata['imports'];
}

@Module({})
export class AppModule {
  static forRoot({ config, logger, imports = [] }: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        // PinoLogger for every service; the request scope and access log are Fastify hooks
        // installed by bootstrap (installRequestLogging).
        RequestLoggingModule.forRoot(logger),
        DatabaseModule,
        HealthModule,
        AuthModule,
        UsersModule,
        ApiKeysModule,
        UpstreamsModule,
        UpstreamOAuthModule,
        UpstreamConnectModule,
        McpModule,
        RateLimitModule,
        ...(config.oauthServer.enabled ? [OAuthServerModule] : []),
        LoginModule,
        ...imports,
      ],
      providers: [
        GLOBAL_FILTER,
        { provide: APP_FILTER, useExisting: GLOBAL_FILTER },
        // The rate-limit guards are RateLimitModule's providers (imported above); AuthGuard is ours.
        AuthGuard,
        ...GLOBAL_GUARDS.map((guard) => ({ provide: APP_GUARD, useExisting: guard })),
      ],
    };
  }
}
