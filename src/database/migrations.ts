import { MigrationExecutor, type DataSource } from 'typeorm';
import { withAdvisoryLock } from './advisory-lock.js';

const MIGRATION_LOCK = 'gatehouse:migrations';

export interface MigrationReport {
  applied: string[];
}

function executor(dataSource: DataSource, queryRunner: Parameters<Parameters<typeof withAdvisoryLock>[2]>[0]) {
  const exec = new MigrationExecutor(dataSource, queryRunner);
  exec.transaction = 'each';
  return exec;
}

/**
 * Applies pending migrations under an advisory lock: when several replicas start at once,
 * one migrates and the others wait, then find nothing left to do.
 */
export async function runMigrations(dataSource: DataSource): Promise<MigrationReport> {
  return withAdvisoryLock(dataSource, MIGRATION_LOCK, async (qr) => {
    const applied = await executor(dataSource, qr).executePendingMigrations();
    return { applied: applied.map((m) => m.name) };
  });
}

/** Reverts the most recently applied migration; returns its name, or undefined if none. */
export async function revertLastMigration(dataSource: DataSource): Promise<string | undefined> {
  return withAdvisoryLock(dataSource, MIGRATION_LOCK, async (qr) => {
    const exec = executor(dataSource, qr);
    const executed = await exec.getExecutedMigrations();
    if (executed.length === 0) return undefined;
    await exec.undoLastMigration();
    return executed[0]?.name;
  });
}

/** Names of migrations not yet applied (an empty list means the schema is current). */
export async function pendingMigrations(dataSource: DataSource): Promise<string[]> {
  const exec = new MigrationExecutor(dataSource);
  return (await exec.getPendingMigrations()).map((m) => m.name);
}
