import { Inject, Injectable, Optional, type OnApplicationBootstrap, type OnApplicationShutdown } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { withAdvisoryLock } from '../database/advisory-lock.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { systemClock, type Clock, type Timer } from '../upstreams/clock.js';
import { SigningKeysService } from './signing-keys.service.js';

/** Nest token of the key rotation's {@link Clock}; production binds the system clock, tests a fake one. */
export const OAUTH_CLOCK = Symbol('OAUTH_CLOCK');

/** The advisory lock the replicas take to check and rotate (one at a time). */
const LOCK = 'gatehouse:oauth-key-rotation';
/** How long a replica waits for another's check before skipping its own (ms). */
const LOCK_WAIT_MS = 10_000;
/** How often (ms) at most a replica checks whether a rotation is due. */
const MAX_CHECK_MS = 10 * 60_000;

/**
 * Automatic signing key rotation (`GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL`, off by default):
 * every replica checks now and then (every min(interval / 2, 10 min)) under one PostgreSQL
 * advisory lock whether the newest signing key is older than the interval, and if so rotates
 * with {@link SigningKeysService.rotate} — the same publish-before-sign overlap as
 * `POST /api/v1/oauth/keys/rotate` (new keys published at once, signing one minute later, old
 * ones published until their tokens expire). The decision reads the keys' age from PostgreSQL, so
 * the replica that takes the lock after another rotated finds fresh keys and does nothing:
 * exactly one rotation per interval whatever the number of replicas. Time comes from the
 * injectable {@link OAUTH_CLOCK} (a key's `created_at` against `clock.now()`).
 */
@Injectable()
export class KeyRotationService implements OnApplicationBootstrap, OnApplicationShutdown {
  private timer: Timer | undefined;
  private stopped = false;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly db: DataSource,
    private readonly keys: SigningKeysService,
    private readonly schema: SchemaStateService,
    @Optional() @Inject(OAUTH_CLOCK) private readonly clock: Clock = systemClock,
    @Optional() private readonly logger?: PinoLogger,
  ) {
    this.logger?.setContext('KeyRotation');
  }

  /** The interval (ms) between rotations; 0 when automatic rotation is off. */
  get intervalMs(): number {
    return this.config.oauthServer.enabled ? this.config.oauthServer.keyRotationIntervalMs : 0;
  }

  /** How often (ms) this replica checks. */
  get checkEveryMs(): number {
    return Math.min(MAX_CHECK_MS, Math.floor(this.intervalMs / 2));
  }

  onApplicationBootstrap(): void {
    if (this.intervalMs === 0) return;
    void this.schema.whenMigrated().then(() => this.schedule());
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /**
   * One check: rotates when the newest signing key is at least the interval old. Returns the new
   * kids, or undefined when no rotation was due (or there are no keys yet: they are created on
   * first use). Throws what PostgreSQL throws (a lock not obtained within 10 s included).
   */
  async rotateIfDue(): Promise<string[] | undefined> {
    if (this.intervalMs === 0) return undefined;
    return withAdvisoryLock(
      this.db,
      LOCK,
      async (q) => {
        const rows = (await q.query("SELECT extract(epoch FROM max(created_at)) * 1000 AS newest FROM oauth_keys WHERE use = 'sig'")) as { newest: string | null }[];
        const newest = rows[0]?.newest;
        if (newest === null || newest === undefined) return undefined;
        if (this.clock.now() - Number(newest) < this.intervalMs) return undefined;
        return this.keys.rotate();
      },
      LOCK_WAIT_MS,
    );
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimer(() => {
      void this.rotateIfDue()
        .then((kids) => kids && this.logger?.info({ kids }, 'signing keys rotated on schedule (GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL)'))
        .catch((error: unknown) => this.logger?.warn({ err: error }, 'scheduled signing key rotation check failed; retrying at the next check'))
        .finally(() => this.schedule());
    }, this.checkEveryMs);
  }
}
