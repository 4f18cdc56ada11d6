import { AsyncResource } from 'node:async_hooks';
import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { UPSTREAM_CLOCK, type Clock } from './clock.js';
import { ConnectionPool, type PooledConnection, type ResolvedValues } from './connection-pool.js';
import { PROCESS_SPAWNER, type ProcessSpawner } from './process-spawner.js';
import { httpOptions, UpstreamConnection } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
// The secrets module owns its topic; importing the declaration (not the module) keeps Nest's graph acyclic.
import { SECRETS_CHANGED } from '../secrets/secrets.topics.js';


/**
 * This replica's per-caller connections (servers configured with `${secret:…}`/`${user:…}`),
 * a {@link ConnectionPool} of at most GATEHOUSE_POOL_MAX, reaped after GATEHOUSE_POOL_IDLE_TTL
 * unused. A caller's changed secret retires the connections started with the old value.
 */
@Injectable()
export class UpstreamPoolService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly pool: ConnectionPool;
  private readonly detached = new AsyncResource('gatehouse.upstreams.pool');
  private unsubscribe: (() => void) | undefined;
  private readonly listed = new Set<(server: string, connection: UpstreamConnection) => void>();

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly bus: ChangeBusService,
    @Inject(UPSTREAM_CLOCK) clock: Clock,
    @Inject(PROCESS_SPAWNER) spawner: ProcessSpawner,
    logger: PinoLogger,
  ) {
    logger.setContext('UpstreamPool');
    const log = {
      info: (o: object, m: string) => logger.debug({ ...o, pooled: true }, m),
      warn: (o: object, m: string) => logger.warn({ ...o, pooled: true }, m),
      debug: (o: object, m: string) => logger.debug({ ...o, pooled: true }, m),
    };
    this.pool = new ConnectionPool({
      max: config.upstreams.poolMax,
      idleTtlMs: config.upstreams.poolIdleTtlMs,
      clock,
      create: (template: UpstreamServerEntity, _owner: string, resolved: ResolvedValues) => {
        const row = Object.assign(new UpstreamServerEntity(), template, { env: resolved.env, headers: resolved.headers });
        const connection: UpstreamConnection = new UpstreamConnection(row, {
          log,
          onToolsChanged: (name) => {
            for (const listener of this.listed) listener(name, connection);
          },
          clock,
          spawner,
          secretValues: resolved.secretValues,
          http: httpOptions(config),
          maxMessageBytes: config.upstreams.maxMessageBytes,
          maxTotalTimeoutMs: config.upstreams.maxTotalTimeoutMs,
          listLimits: config.upstreams.listLimits,
        });
        return connection;
      },
      // Connections outlive the request that started them: no request context in their logs.
      start: (connection) => this.detached.runInAsyncScope(() => connection.connect()),
    });
  }

  onApplicationBootstrap(): void {
    this.unsubscribe = this.bus.subscribe(SECRETS_CHANGED, (event) => {
      // $resync carries no payload: every secret may have changed.
      const data = event.data as { server: string; owner: string } | null;
      void (data ? this.retire(data.server, data.owner === '*' ? undefined : data.owner, 'its secrets changed') : this.pool.retireIdle('its secrets may have changed'));
    });
  }

  /** Calls `listener` when a per-caller connection has listed (new) offerings; returns the unsubscribe function. */
  onListed(listener: (server: string, connection: UpstreamConnection) => void): () => void {
    this.listed.add(listener);
    return () => this.listed.delete(listener);
  }

  /** See {@link ConnectionPool.acquire}. */
  acquire(template: UpstreamServerEntity, owner: string, resolved: ResolvedValues): Promise<PooledConnection> {
    return this.pool.acquire(template, owner, resolved);
  }

  /** Closes the per-caller connections of `server` (one owner's, or all); in-flight calls fail at once with `reason`. */
  retire(server: string, owner: string | undefined, reason: string): Promise<void> {
    return this.pool.retire(server, owner, reason);
  }

  /** The live or starting per-caller connections to `server` (diagnostics, tests). */
  connectionsOf(server: string): UpstreamConnection[] {
    return this.pool.connectionsOf(server);
  }

  /** Connections alive or starting. */
  get size(): number {
    return this.pool.size;
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.unsubscribe?.();
    await this.pool.close('the gateway is shutting down');
  }
}
