import 'reflect-metadata';
import { writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { DataSource } from 'typeorm';
import { ApiKeyEntity } from './api-keys/api-key.entity.js';
import { insertApiKey } from './api-keys/api-keys.service.js';
import { PERMISSIONS } from './auth/principal.js';
import { resolveDatabase } from './bootstrap.js';
import { rotateSecrets } from './secrets/rotate.js';
import { parseKeyRing } from './secrets/secret-crypto.js';
import { createRootLogger } from './common/logging/logger.js';
import { loadConfigOrExit } from './config/load-config.js';
import { buildDataSourceOptions } from './database/data-source-options.js';
import { pendingMigrations, revertLastMigration, runMigrations } from './database/migrations.js';

const USAGE = `Usage: gatehouse <command>

Commands:
  migrate                 apply pending database migrations (safe to run from several replicas at once)
  migrate:revert          revert the most recently applied migration
  migrate:show            list pending migrations; exit 1 if any are pending
  create-admin-key --name NAME [--expires-at ISO-DATE]
                          create an admin API key and print it (once) on stdout; applies
                          pending migrations first unless DB_MIGRATE=false
  secrets rotate          re-seal every stored secret under the first key of
                          GATEHOUSE_ENCRYPTION_KEYS (online, idempotent, resumable; one
                          replica at a time); prints counts; exit 1 if any row cannot be opened
  migrate:generate NAME [--out DIR]
                          write <DIR or migrations/>/<timestamp>-NAME.ts with the SQL that brings
                          the database in line with the entities (apply pending migrations first)

Configuration comes from the environment and .env, as for the server (docs/configuration.md).
With no DATABASE_URL the embedded PostgreSQL is used.`;

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

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (!command || command === 'help' || command === '--help' || command === '-h') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  const known = ['migrate', 'migrate:revert', 'migrate:show', 'migrate:generate', 'create-admin-key', 'secrets'];
  if (!known.includes(command)) {
    process.stderr.write(`unknown command "${command}"; expected one of ${known.join(', ')}\n\n${USAGE}\n`);
    return 2;
  }
  const name = args[0];
  if (command === 'migrate:generate' && !/^[A-Z][A-Za-z0-9]{0,79}$/.test(name ?? '')) {
    process.stderr.write('migrate:generate: NAME is required, in PascalCase (e.g. AddUpstreamServers)\n');
    return 2;
  }

  if (command === 'secrets' && args[0] !== 'rotate') {
    process.stderr.write(`secrets: expected a subcommand: rotate, got ${JSON.stringify(args[0] ?? '')}\n`);
    return 2;
  }
  const option = (flag: string) => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const keyName = option('--name')?.trim();
  const expiresAt = option('--expires-at');
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
  const logger = await createRootLogger({ ...config, log: { ...config.log, pretty: false } });
  const { config: resolved, embedded } = await resolveDatabase(config, logger);
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
      case 'secrets': {
        if (!config.secrets.keys) {
          process.stderr.write('secrets rotate: set GATEHOUSE_ENCRYPTION_KEYS (new key first, old keys after it) to the ring to rotate to\n');
          return 2;
        }
        if (config.database.migrate) await runMigrations(dataSource);
        const ring = parseKeyRing(config.secrets.keys);
        const report = await rotateSecrets(dataSource, ring);
        process.stdout.write(`rotated ${report.rotated}, already under "${ring.primaryId}" ${report.current}, failed ${report.failed.length}\n`);
        for (const f of report.failed) process.stderr.write(`  cannot open ${f.server}/${f.name} (key "${f.keyId}"): ${f.reason}\n`);
        return report.failed.length > 0 ? 1 : 0;
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
        const outIndex = args.indexOf('--out');
        const dir = outIndex > 0 && args[outIndex + 1] ? args[outIndex + 1] : MIGRATIONS_SOURCE_DIR;
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

process.exitCode = await main(process.argv.slice(2));
