import { Module, RequestMethod, type DynamicModule, type ModuleMetadata } from '@nestjs/common';
import { APP_FILTER, APP_GUARD } from '@nestjs/core';
import { AuthGuard } from './auth/auth.guard.js';
import { ApiKeysModule } from './api-keys/api-keys.module.js';
import { AuthModule } from './auth/auth.module.js';
import { LoggerModule } from 'nestjs-pino';
import type { Logger } from 'pino';
import { AllExceptionsFilter } from './common/http/all-exceptions.filter.js';
import { httpLoggerOptions } from './common/logging/logger.js';
import { ConfigModule } from './config/config.module.js';
import type { AppConfig } from './config/config.schema.js';
import { DatabaseModule } from './database/database.module.js';
import { HealthModule } from './health/health.module.js';
import { McpModule } from './mcp/mcp.module.js';
import { UpstreamsModule } from './upstreams/upstreams.module.js';
import { UsersModule } from './users/users.module.js';

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
        // nestjs-pino's default route pattern ('{/*splat}') matches nothing on the Fastify
        // adapter of Nest 12; '{*path}' matches every path, unknown ones included.
        LoggerModule.forRoot({ pinoHttp: httpLoggerOptions(logger), forRoutes: [{ path: '{*path}', method: RequestMethod.ALL }] }),
        DatabaseModule,
        HealthModule,
        AuthModule,
        UsersModule,
        ApiKeysModule,
        UpstreamsModule,
        McpModule,
        ...imports,
      ],
      providers: [
        { provide: APP_FILTER, useClass: AllExceptionsFilter },
        { provide: APP_GUARD, useClass: AuthGuard },
      ],
    };
  }
}
