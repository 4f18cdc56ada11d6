import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pino, type Logger } from 'pino';
import { DataSource, MigrationExecutor } from 'typeorm';
import { ApiKeyEntity } from './api-keys/api-key.entity.js';
import { insertApiKey } from './api-keys/api-keys.service.js';
import { PERMISSIONS } from './auth/principal.js';
import { resolveDatabase } from './bootstrap.js';
import type { Invocation } from './cli-args.js';
import type { AppConfig } from './config/config.schema.js';
import { findRunningEmbeddedPostgres } from './database/embedded-attach.js';
import type { EmbeddedPostgresHandle } from './database/embedded-postgres.js';
import { rotateSecrets } from './secrets/rotate.js';
import { rotateConnections } from './upstream-oauth/rotate-connections.js';
import { parseKeyRing } from './secrets/secret-crypto.js';
import { createRootLogger } from './common/logging/logger.js';
import { loadConfigOrExit } from './config/load-config.js';
import { buildDataSourceOptions } from './database/data-source-options.js';
import { pendingMigrations, revertLastMigration, runMigrations } from './database/migrations.js';

const MIGRATIONS_SOURCE_DIR = join(import.meta.dirname, '..', '..', 'migrations');

function migrationSource(className: string, up: string[], down: string[]): string {
  const lines = (queries: string[]) => queries.map((q) => `    await q.query(${JSON.stringify(q)});`).join('\n');
  return `import type { MigrationInterface, QueryRunner } from 'typeorm';

export class ${className} implements MigrationInterface {
  name = '${className}';

  async up(q: QueryRunner): Promise<void> {
${lines(up)}
  }

  async down(q: QueryRunner): Promise<void> {
${lines(down)}
  }
}
`;
}

/** The embedded PostgreSQL a running server started, else the configured database (see {@link resolveDatabase}). */
async function openDatabase(config: AppConfig, logger: Logger): Promise<{ config: AppConfig; embedded?: EmbeddedPostgresHandle }> {
  if (!config.database.url) {
    const running = await findRunningEmbeddedPostgres(config.database.embedded.dir, 'gatehouse');
    if (running) {
      logger.info(
        { dataDir: running.dataDir, port: running.port, serverPid: running.ownerPid },
        `using the embedded PostgreSQL of the running Gatehouse (pid ${running.ownerPid}) on 127.0.0.1:${running.port}`,
      );
      return { config: { ...config, database: { ...config.database, url: running.url } } };
    }
  }
  return resolveDatabase(config, logger);
}

/**
 * Runs one parsed CLI command (see `cli-args.ts`) and returns the exit code: 0 done, 1 failed
 * (or, for migrate:show, migrations pending), 2 bad usage. Only the command's result goes to
 * stdout; log lines and messages go to stderr.
 */
export async function runCommand(invocation: Extract<Invocation, { kind: 'run' }>): Promise<number> {
  const { args, options } = invocation;
  const command = invocation.command.name;
  const name = args[0];
  if (command === 'migrate:generate' && !/^[A-Z][A-Za-z0-9]{0,79}$/.test(name)) {
    process.stderr.write(`migrate:generate: NAME must be PascalCase (e.g. AddUpstreamServers), got ${JSON.stringify(name)}\n`);
    return 2;
  }
  const text = (flag: string) => (typeof options[flag] === 'string' ? options[flag] : undefined);
  const keyName = text('--name')?.trim();
  const expiresAt = text('--expires-at');
  if (command === 'create-admin-key') {
    if (!keyName || keyName.length > 100) {
      process.stderr.write('create-admin-key: --name NAME is required (1-100 characters), e.g. --name bootstrap\n');
      return 2;
    }
    if (expiresAt !== undefined && !(Date.parse(expiresAt) > Date.now())) {
      process.stderr.write(`create-admin-key: --expires-at expects a future ISO 8601 date such as 2027-01-31T00:00:00Z, got ${JSON.stringify(expiresAt)}\n`);
      return 2;
    }
  }

  const config = loadConfigOrExit();
  // stdout carries only the command's output (the key, for create-admin-key): every log line goes to stderr.
  const logger = await createRootLogger({ ...config, log: { ...config.log, pretty: false } }, pino.destination({ dest: 2, sync: true }));
  let opened: Awaited<ReturnType<typeof openDatabase>>;
  try {
    opened = await openDatabase(config, logger);
  } catch (error) {
    process.stderr.write(`${command} failed: ${(error as Error).message}\n`);
    return 1;
  }
  const { config: resolved, embedded } = opened;
  const dataSource = new DataSource(buildDataSourceOptions(resolved.database, resolved.database.url!));
  try {
    await dataSource.initialize();
    switch (command) {
      case 'migrate': {
        const { applied } = await runMigrations(dataSource);
        process.stdout.write(applied.length ? `applied: ${applied.join(', ')}\n` : 'database schema is current\n');
        return 0;
      }
      case 'migrate:revert': {
        if (options['--yes'] !== true) {
          const last = (await new MigrationExecutor(dataSource).getExecutedMigrations())[0];
          if (!last) {
            process.stdout.write('nothing to revert\n');
            return 0;
          }
          process.stderr.write(
            `migrate:revert would revert ${last.name} (its down() may drop tables and their data); pass --yes to revert it\n`,
          );
          return 2;
        }
        const reverted = await revertLastMigration(dataSource);
        process.stdout.write(reverted ? `reverted: ${reverted}\n` : 'nothing to revert\n');
        return 0;
      }
      case 'migrate:show': {
        const pending = await pendingMigrations(dataSource);
        process.stdout.write(pending.length ? `pending: ${pending.join(', ')}\n` : 'database schema is current\n');
        return pending.length ? 1 : 0;
      }
      case 'create-admin-key': {
        if (config.database.migrate) await runMigrations(dataSource);
        const { key, row } = await insertApiKey(dataSource.getRepository(ApiKeyEntity), config.auth.apiKeyPepper, {
          name: keyName!,
          role: 'admin',
          scopes: [...PERMISSIONS],
          expiresAt: expiresAt ? new Date(expiresAt) : null,
          userId: null,
          createdBy: 'cli',
        });
        process.stderr.write(`created admin key "${row.name}" (id ${row.id}); it is shown once, store it now:\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      }
      case 'secrets rotate': {
        if (!config.secrets.keys) {
          process.stderr.write('secrets rotate: set GATEHOUSE_ENCRYPTION_KEYS (new key first, old keys after it) to the ring to rotate to\n');
          return 2;
        }
        if (config.database.migrate) await runMigrations(dataSource);
        const ring = parseKeyRing(config.secrets.keys);
        const report = await rotateSecrets(dataSource, ring);
        process.stdout.write(`rotated ${report.rotated}, already under "${ring.primaryId}" ${report.current}, failed ${report.failed.length}\n`);
        for (const f of report.failed) process.stderr.write(`  cannot open ${f.server}/${f.name} (key "${f.keyId}"): ${f.reason}\n`);
        const connections = await rotateConnections(dataSource, ring);
        process.stdout.write(`upstream OAuth connections: rotated ${connections.rotated}, already under "${ring.primaryId}" ${connections.current}, failed ${connections.failed.length}\n`);
        for (const f of connections.failed) process.stderr.write(`  cannot open the ${f.field} of ${f.server} (owner ${f.owner === '*' ? 'shared' : f.owner}): ${f.reason}\n`);
        return report.failed.length + connections.failed.length > 0 ? 1 : 0;
      }
      default: {
        const pending = await pendingMigrations(dataSource);
        if (pending.length) {
          process.stderr.write(`apply pending migrations first (${pending.join(', ')}): npm run migration:run\n`);
          return 1;
        }
        const sql = await dataSource.driver.createSchemaBuilder().log();
        if (sql.upQueries.length === 0) {
          process.stdout.write('no changes: the entities match the database\n');
          return 0;
        }
        const timestamp = Date.now();
        const className = `${name}${timestamp}`;
        const dir = text('--out') ?? MIGRATIONS_SOURCE_DIR;
        const file = join(dir, `${timestamp}-${name}.ts`);
        const up = sql.upQueries.map((q) => q.query);
        const down = sql.downQueries.map((q) => q.query).reverse();
        writeFileSync(file, migrationSource(className, up, down));
        process.stdout.write(`wrote ${relative(process.cwd(), file)}; review it, then npm run migration:run\n`);
        return 0;
      }
    }
  } catch (error) {
    process.stderr.write(`${command} failed: ${(error as Error).message}\n`);
    return 1;
  } finally {
    if (dataSource.isInitialized) await dataSource.destroy();
    await embedded?.stop();
  }
}

