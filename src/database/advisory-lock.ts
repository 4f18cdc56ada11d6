import type { DataSource, QueryRunner } from 'typeorm';

/**
 * Runs `fn` while holding a PostgreSQL session-level advisory lock named `name`, so work
 * that must happen once across replicas (migrations, key rotation, sweeps) does. The lock
 * and the work share one connection, which is handed to `fn`: a pool of size one cannot
 * deadlock, and if the process dies the lock goes with its connection.
 *
 * `waitMs` bounds the wait for another holder (`lock_timeout`); 0 waits forever.
 */
export async function withAdvisoryLock<T>(
  dataSource: DataSource,
  name: string,
  fn: (queryRunner: QueryRunner) => Promise<T>,
  waitMs = 0,
): Promise<T> {
  const queryRunner = dataSource.createQueryRunner();
  await queryRunner.connect();
  try {
    await queryRunner.query(`SET lock_timeout = ${Math.max(0, Math.floor(waitMs))}`);
    await queryRunner.query('SELECT pg_advisory_lock(hashtext($1))', [name]);
    await queryRunner.query('SET lock_timeout = 0');
    try {
      return await fn(queryRunner);
    } finally {
      await queryRunner.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
    }
  } finally {
    await queryRunner.release();
  }
}
