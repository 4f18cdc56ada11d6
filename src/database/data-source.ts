import { DataSource } from 'typeorm';
import { loadConfigOrExit } from '../config/load-config.js';
import { buildDataSourceOptions } from './data-source-options.js';

/**
 * For the TypeORM CLI (`typeorm -d dist/src/database/data-source.js …`) against an external
 * PostgreSQL. Gatehouse's own CLI (`node dist/cli.js migrate …`) is the supported way: it
 * also starts the embedded PostgreSQL when `DATABASE_URL` is unset.
 */
const config = loadConfigOrExit();
if (!config.database.url) {
  process.stderr.write('DATABASE_URL: required for the TypeORM CLI; use `node dist/cli.js` for the embedded database\n');
  process.exit(78);
}

export default new DataSource(buildDataSourceOptions(config.database, config.database.url));
