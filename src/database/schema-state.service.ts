import { Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { pendingMigrations, runMigrations, type MigrationReport } from './migrations.js';

/**
 * Whether this replica's database schema is current. Gatehouse listens before it migrates
 * (so liveness holds during a long migration and readiness can say why it is not ready);
 * anything that needs the tables at start waits on {@link whenMigrated}.
 *
 * With `DB_MIGRATE=false` a separate job migrates: {@link watch} polls until it has.
 */
@Injectable()
export class SchemaStateService implements OnApplicationShutdown {
  private migrated = false;
  private resolveMigrated!: () => void;
  private readonly migratedPromise = new Promise<void>((resolve) => (this.resolveMigrated = resolve));
  private poll: NodeJS.Timeout | undefined;

  constructor(private readonly dataSource: DataSource) {}

  get isMigrated(): boolean {
    return this.migrated;
  }

  whenMigrated(): Promise<void> {
    return this.migratedPromise;
  }

  /** Applies pending migrations (under the cross-replica lock) and marks the schema current. */
  async migrate(): Promise<MigrationReport> {
    const report = await runMigrations(this.dataSource);
    this.markMigrated();
    return report;
  }

  /** Checks once whether migrations are pending; marks the schema current if none are. */
  async refresh(): Promise<boolean> {
    if (this.migrated) return true;
    if ((await pendingMigrations(this.dataSource)).length === 0) this.markMigrated();
    return this.migrated;
  }

  /** Polls {@link refresh} every `intervalMs` until the schema is current. */
  watch(intervalMs = 2_000): void {
    const tick = () => {
      void this.refresh()
        .catch(() => false)
        .then((done) => {
          if (!done) this.poll = setTimeout(tick, intervalMs).unref();
        });
    };
    tick();
  }

  onApplicationShutdown(): void {
    clearTimeout(this.poll);
  }

  private markMigrated(): void {
    if (this.migrated) return;
    this.migrated = true;
    this.resolveMigrated();
  }
}
