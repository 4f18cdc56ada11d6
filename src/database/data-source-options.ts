import { join } from 'node:path';
import type { DataSourceOptions } from 'typeorm';
import type { AppConfig } from '../config/config.schema.js';

/** `dist/src` (or `src` when run from source): where entities are found by glob. */
const SRC_ROOT = join(import.meta.dirname, '..');

/**
 * The one builder of TypeORM options, used by the app, the CLI (`migrate`, `migrate:revert`,
 * `migrate:generate`) and the TypeORM CLI's `data-source.ts`, so all three see the same
 * entities, migrations and pool settings.
 */
export function buildDataSourceOptions(db: AppConfig['database'], url: string): DataSourceOptions {
  return {
    type: 'postgres',
    url,
    // Schema changes only ever come from migrations/.
    synchronize: false,
    migrationsRun: false,
    entities: [join(SRC_ROOT, '**', '*.entity.js')],
    migrations: [join(SRC_ROOT, '..', 'migrations', '*.js')],
    migrationsTableName: 'migrations',
    // Each migration commits on its own, so a failure leaves every earlier one applied and
    // the failed one rolled back: a re-run continues where it stopped.
    migrationsTransactionMode: 'each',
    logging: false,
    extra: {
      max: db.poolMax,
      application_name: 'gatehouse',
      statement_timeout: db.statementTimeoutMs || undefined,
      connectionTimeoutMillis: 10_000,
      idleTimeoutMillis: 30_000,
    },
  };
}
