import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';
import { ReadinessGates } from '../database/readiness-gates.js';
import { SchemaStateService } from '../database/schema-state.service.js';

export type CheckState = 'ok' | 'pending' | 'error' | 'shutting_down';

export interface ReadinessReport {
  ready: boolean;
  checks: { database: CheckState; migrations: CheckState; lifecycle: 'running' | 'shutting_down' } & Record<string, string>;
  /** Why each failing gate is not ready (see {@link ReadinessGates}). */
  reasons?: Record<string, string>;
}

const PING_TIMEOUT_MS = 2_000;

/**
 * Whether this replica should receive traffic: the database answers, the schema is current,
 * and it is not shutting down.
 */
@Injectable()
export class ReadinessService {
  private shuttingDown = false;

  constructor(
    private readonly dataSource: DataSource,
    private readonly schema: SchemaStateService,
    private readonly gates: ReadinessGates,
  ) {}

  /** From now on readiness answers 503, so the load balancer stops sending traffic here. */
  beginShutdown(): void {
    this.shuttingDown = true;
  }

  async check(): Promise<ReadinessReport> {
    if (this.shuttingDown) {
      return { ready: false, checks: { database: 'shutting_down', migrations: 'shutting_down', lifecycle: 'shutting_down' } };
    }
    const database = await this.ping();
    let migrations: CheckState = this.schema.isMigrated ? 'ok' : 'pending';
    if (migrations === 'pending' && database === 'ok') {
      migrations = await this.schema.refresh().then(
        (current) => (current ? 'ok' : 'pending'),
        () => 'error' as const,
      );
    }
    const failing = this.gates.failing();
    const reasons = Object.fromEntries(failing.filter((g) => g.reason).map((g) => [g.name, g.reason as string]));
    return {
      ready: database === 'ok' && migrations === 'ok' && failing.length === 0,
      checks: { database, migrations, ...this.gates.states(), lifecycle: 'running' },
      ...(failing.length > 0 ? { reasons } : {}),
    };
  }

  private async ping(): Promise<CheckState> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<CheckState>((resolve) => {
      timer = setTimeout(() => resolve('error'), PING_TIMEOUT_MS);
    });
    const ping = this.dataSource.query('SELECT 1').then(
      () => 'ok' as const,
      () => 'error' as const,
    );
    try {
      return await Promise.race([ping, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
