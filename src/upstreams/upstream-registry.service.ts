import { Inject, Injectable } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { QueryFailedError, Repository, type EntityManager } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { stringFields, topic } from '../database/change-bus.js';
import { ReadinessGates, type ReadinessGate } from '../database/readiness-gates.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { UPSTREAM_CLOCK, type Clock } from './clock.js';
import { loadServersFile } from './servers-file.js';
import { unmask, unmaskArgs, unmaskOAuth, unmaskUrl } from './server-view.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { createServerSchema, patchServerSchema, SERVER_NAME, validateMerged, type CreateServerInput } from './upstream-server.schema.js';

/** Bus topic: `{ name }` of a server that was created, changed or deleted (published in the writing transaction). */
export const UPSTREAMS_CHANGED = topic<{ name: string }>('upstreams.changed', stringFields('name'));

/** Backoff of the first load's retries (ms). */
const LOAD_RETRY_MIN_MS = 500;
const LOAD_RETRY_MAX_MS = 30_000;

const isUniqueViolation = (e: unknown) => e instanceof QueryFailedError && (e.driverError as { code?: string }).code === '23505';

/** First line of an error, for the readiness reason and logs. */
const firstLine = (error: unknown) => (error instanceof Error ? error.message : String(error)).split('\n')[0].slice(0, 300);

/**
 * The registry of upstream MCP servers in PostgreSQL (`upstream_servers`): validation, CRUD and
 * the declarative GATEHOUSE_SERVERS_FILE. Every write publishes {@link UPSTREAMS_CHANGED}
 * inside its own transaction, so a committed change is always announced to every replica and a
 * rolled-back one never is. Owns the readiness gate `servers`: pending until the first load
 * succeeded (retried with backoff while the database fails), so `/readyz` answers 503 until
 * this replica knows its servers.
 */
@Injectable()
export class UpstreamRegistry {
  private readonly gate: ReadinessGate;
  private fileServers: CreateServerInput[] | undefined;
  private stopped = false;
  private cancelRetry: (() => void) | undefined;

  constructor(
    @InjectRepository(UpstreamServerEntity) private readonly repo: Repository<UpstreamServerEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    gates: ReadinessGates,
    @Inject(UPSTREAM_CLOCK) private readonly clock: Clock,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('UpstreamRegistry');
    this.gate = gates.register('servers');
    this.gate.set('pending', 'the upstream server registry has not loaded yet');
  }

  /** Reads and validates GATEHOUSE_SERVERS_FILE (if set); throws a clear error for a bad file, stopping the start. */
  async prepare(): Promise<void> {
    if (this.config.upstreams.serversFile) this.fileServers = await loadServersFile(this.config.upstreams.serversFile);
  }

  /**
   * Once the schema is migrated: applies the servers file, reads every server and hands them to
   * `apply`. Any failure (database down, query error, `apply` throwing) sets the gate to
   * `error` with the reason and retries after 0.5 s, 1 s, 2 s … 30 s. The gate turns `ok` when
   * `apply` has succeeded once. Resolves then (or when stopped).
   */
  async firstLoad(apply: (rows: UpstreamServerEntity[]) => Promise<void>): Promise<void> {
    await this.schema.whenMigrated();
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        if (this.fileServers) await this.applyFile(this.fileServers);
        await apply(await this.all());
        this.gate.set('ok');
        return;
      } catch (error) {
        if (this.stopped) return;
        const delay = Math.min(LOAD_RETRY_MAX_MS, LOAD_RETRY_MIN_MS * 2 ** attempt);
        this.gate.set('error', `could not load the upstream servers: ${firstLine(error)}`);
        this.logger.error({ err: error, retryInMs: delay }, 'could not load upstream servers; retrying');
        await new Promise<void>((resolve) => {
          const timer = this.clock.setTimer(resolve, delay);
          this.cancelRetry = () => {
            timer.cancel();
            resolve();
          };
        });
      }
    }
  }

  /** Stops retrying the first load (shutdown). */
  stop(): void {
    this.stopped = true;
    this.cancelRetry?.();
  }

  /** Resolves once the first load has succeeded (the `servers` readiness gate is ok); never rejects. */
  whenLoaded(): Promise<void> {
    return this.gate.whenOk();
  }

  /** Whether the first load has succeeded. */
  get loaded(): boolean {
    return this.gate.state === 'ok';
  }

  async all(): Promise<UpstreamServerEntity[]> {
    return this.repo.find({ order: { name: 'ASC' } });
  }

  /** The stored row, or null (deleted or never existed; also for a name that cannot exist). */
  async findRow(name: string): Promise<UpstreamServerEntity | null> {
    return SERVER_NAME.test(name) ? this.repo.findOneBy({ name }) : null;
  }

  /** The stored row. Throws AppError `not_found` (404). */
  async find(name: string): Promise<UpstreamServerEntity> {
    const row = await this.findRow(name);
    if (!row) throw new AppError(ErrorCode.NotFound, `server "${name}" does not exist`);
    return row;
  }

  /** Validates and stores a new server (source `api`). Throws `validation_failed` (400) or `conflict` (409, field `name`). */
  async create(body: unknown): Promise<UpstreamServerEntity> {
    const input = parseBody(createServerSchema, body);
    try {
      return await this.repo.manager.transaction(async (tx) => {
        const saved = await tx.save(tx.create(UpstreamServerEntity, { ...input, source: 'api' as const }));
        await this.announce(saved.name, tx);
        return saved;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError(ErrorCode.Conflict, `name: a server named "${input.name}" already exists`, { details: { field: 'name' } });
      throw error;
    }
  }

  /**
   * Applies a partial update; masked values sent back (`[REDACTED]`) keep what is stored. The
   * row is locked for the transaction, so concurrent PATCHes of one server apply one after the
   * other. Throws `validation_failed` (400) or `not_found` (404).
   */
  async patch(name: string, body: unknown): Promise<UpstreamServerEntity> {
    const input = parseBody(patchServerSchema, body);
    if (!SERVER_NAME.test(name)) throw new AppError(ErrorCode.NotFound, `server "${name}" does not exist`);
    return this.repo.manager.transaction(async (tx) => {
      const row = await tx.findOne(UpstreamServerEntity, { where: { name }, lock: { mode: 'pessimistic_write' } });
      if (!row) throw new AppError(ErrorCode.NotFound, `server "${name}" does not exist`);
      const next = {
        ...input,
        ...(input.env ? { env: unmask(input.env, row.env) } : {}),
        ...(input.headers ? { headers: unmask(input.headers, row.headers) } : {}),
        ...(input.inject ? { inject: unmask(input.inject, row.inject) } : {}),
        ...(input.args ? { args: unmaskArgs(input.args, row.args) } : {}),
        ...(input.url ? { url: unmaskUrl(input.url, row.url) } : {}),
        ...(input.oauth ? { oauth: unmaskOAuth(input.oauth, row.oauth) } : {}),
      };
      parseBody(validateMerged, {
        transport: next.transport ?? row.transport,
        command: next.command ?? row.command,
        url: next.url ?? row.url,
        oauth: next.oauth === undefined ? row.oauth : next.oauth,
        headers: next.headers ?? row.headers,
      });
      tx.merge(UpstreamServerEntity, row, next);
      const saved = await tx.save(row);
      await this.announce(name, tx);
      return saved;
    });
  }

  /** Deletes a server. Throws `not_found` (404). */
  async remove(name: string): Promise<void> {
    await this.repo.manager.transaction(async (tx) => {
      const row = SERVER_NAME.test(name) ? await tx.findOneBy(UpstreamServerEntity, { name }) : null;
      if (!row) throw new AppError(ErrorCode.NotFound, `server "${name}" does not exist`);
      await tx.remove(row);
      await this.announce(name, tx);
    });
  }

  /** Upserts the file's servers and removes those the file declared before and no longer lists, in one transaction. */
  private async applyFile(servers: CreateServerInput[]): Promise<void> {
    const names = new Set(servers.map((s) => s.name));
    await this.repo.manager.transaction(async (tx) => {
      for (const server of servers) {
        const existing = await tx.findOneBy(UpstreamServerEntity, { name: server.name });
        await tx.save(UpstreamServerEntity, { ...(existing ?? {}), ...server, source: 'file' as const });
        await this.announce(server.name, tx);
      }
      // The file is declarative: servers it declared before and no longer lists are removed.
      const stale = (await tx.findBy(UpstreamServerEntity, { source: 'file' })).filter((s) => !names.has(s.name));
      await tx.remove(stale);
      for (const s of stale) await this.announce(s.name, tx);
    });
    this.logger.info({ servers: [...names] }, `applied ${names.size} server(s) from ${this.config.upstreams.serversFile}`);
  }

  /** Publishes the change inside `tx`: delivered to every replica if and only if it commits. */
  private announce(name: string, tx: EntityManager): Promise<void> {
    return this.bus.publish(UPSTREAMS_CHANGED, { name }, tx);
  }
}
