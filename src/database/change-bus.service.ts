import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { PgChangeBus } from './change-bus.js';

/**
 * The app's {@link PgChangeBus}: modules publish `topic` events after committing a change and
 * subscribe to drop their per-replica caches. Listening starts before the app serves.
 */
@Injectable()
export class ChangeBusService extends PgChangeBus implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(APP_CONFIG) config: AppConfig, dataSource: DataSource, logger: PinoLogger) {
    logger.setContext('ChangeBus');
    super({
      connectionString: config.database.url ?? '',
      query: (sql, params) => dataSource.query(sql, params),
      log: { warn: (m) => logger.warn(m), debug: (m) => logger.debug(m) },
    });
  }

  async onModuleInit(): Promise<void> {
    await this.start();
  }

  /** After the HTTP server has drained (Nest runs destroy hooks before closing it). */
  async onApplicationShutdown(): Promise<void> {
    await this.close();
  }
}
