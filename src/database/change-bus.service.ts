import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { PgChangeBus } from './change-bus.js';
import { ReadinessGates } from './readiness-gates.js';

/**
 * The app's {@link PgChangeBus}: modules publish `topic` events after committing a change and
 * subscribe to drop their per-replica caches. Listening starts before the app serves. Its
 * readiness gate `changeBus` is `ok` while listening and `error` while the connection is lost
 * (see {@link PgChangeBus}), so `/readyz` answers 503 for a replica that cannot hear changes.
 */
@Injectable()
export class ChangeBusService extends PgChangeBus implements OnModuleInit, OnApplicationShutdown {
  constructor(@Inject(APP_CONFIG) config: AppConfig, dataSource: DataSource, logger: PinoLogger, gates: ReadinessGates) {
    logger.setContext('ChangeBus');
    super({
      connectionString: config.database.url ?? '',
      query: (sql, params) => dataSource.query(sql, params),
      log: { warn: (m) => logger.warn(m), info: (m) => logger.info(m), debug: (m) => logger.debug(m) },
      liveness: { intervalMs: config.database.bus.livenessIntervalMs, timeoutMs: config.database.bus.livenessTimeoutMs },
      backoff: { min: 100, max: 10_000 },
      status: gates.register('changeBus'),
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
