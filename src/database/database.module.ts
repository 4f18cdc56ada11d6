import { Global, Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from './change-bus.service.js';
import { buildDataSourceOptions } from './data-source-options.js';
import { ReadinessGates } from './readiness-gates.js';
import { SchemaStateService } from './schema-state.service.js';

/** The PostgreSQL connection (TypeORM DataSource) and the cross-replica change bus. */
@Global()
@Module({
  imports: [
    TypeOrmModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => {
        if (!config.database.url) throw new Error('database URL not resolved before the app started');
        return { ...buildDataSourceOptions(config.database, config.database.url), retryAttempts: 10, retryDelay: 3_000 };
      },
    }),
  ],
  providers: [ChangeBusService, SchemaStateService, ReadinessGates],
  exports: [ChangeBusService, SchemaStateService, ReadinessGates],
})
export class DatabaseModule {}
