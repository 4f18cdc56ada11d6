import { AsyncResource } from 'node:async_hooks';
import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Tool } from '@modelcontextprotocol/client';
import { PinoLogger } from 'nestjs-pino';
import { QueryFailedError, Repository } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { isSensitiveKey, REDACTED } from '../common/logging/redact.js';
import { parseBody } from '../common/validation/parse-body.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { buildCatalog, type Catalog } from './catalog.js';
import { loadServersFile } from './servers-file.js';
import { UpstreamConnection, type UpstreamStatus } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { createServerSchema, patchServerSchema, validateMerged, type CreateServerInput } from './upstream-server.schema.js';

/** Bus topic: `{ name }` of a server that was created, changed or deleted. */
export const UPSTREAMS_CHANGED = 'upstreams.changed';

export interface UpstreamServerView {
  id: string;
  name: string;
  transport: UpstreamServerEntity['transport'];
  command: string | null;
  args: string[];
  env: Record<string, string>;
  cwd: string | null;
  url: string | null;
  headers: Record<string, string>;
  enabled: boolean;
  description: string | null;
  timeoutMs: number;
  toolFilter: UpstreamServerEntity['toolFilter'];
  source: UpstreamServerEntity['source'];
  createdAt: string;
  updatedAt: string;
  status: UpstreamStatus;
}

/** Values under credential-like keys (`Authorization`, `GITHUB_TOKEN`…) are never shown back. */
function mask(map: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, isSensitiveKey(k) ? REDACTED : v]));
}

/** A PATCH may send a masked value back unchanged: keep what is stored for it. */
function unmask(next: Record<string, string>, stored: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(next).map(([k, v]) => [k, v === REDACTED && k in stored ? stored[k] : v]));
}

const isUniqueViolation = (e: unknown) => e instanceof QueryFailedError && (e.driverError as { code?: string }).code === '23505';

/**
 * The registry of upstream MCP servers (PostgreSQL, managed through the admin API or
 * GATEHOUSE_SERVERS_FILE) and this replica's live connections to them. A change on any replica
 * is published on the change bus; every replica then reloads that one server and reconnects,
 * so nothing needs a restart.
 */
@Injectable()
export class UpstreamServersService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly connections = new Map<string, UpstreamConnection>();
  private readonly toolListeners = new Set<(server: string) => void>();
  /** Built catalogs by scope ('' = every server, aggregated), dropped on any change. */
  private readonly catalogs = new Map<string, Catalog | null>();
  private fileServers: CreateServerInput[] | undefined;
  private stopped = false;
  private readonly detached = new AsyncResource('gatehouse.upstreams');
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectRepository(UpstreamServerEntity) private readonly repo: Repository<UpstreamServerEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Upstreams');
  }

  /**
   * The catalog a client of `/mcp` (scope `''`, aggregated and namespaced) or of
   * `/mcp/<server>` (its own names) sees; `undefined` for an unknown or disabled server.
   * Cached until something changes.
   */
  catalog(scope: string): Catalog | undefined {
    let catalog = this.catalogs.get(scope);
    if (catalog === undefined) {
      const sources = [...this.connections.values()]
        .filter((c) => c.server.enabled && (scope === '' || c.server.name === scope))
        .sort((a, b) => a.server.name.localeCompare(b.server.name))
        .map((c) => ({ server: c.server.name, toolFilter: c.server.toolFilter, ...c.offerings() }));
      catalog = scope !== '' && sources.length === 0 ? null : buildCatalog(sources, scope === '' ? 'aggregate' : 'single');
      this.catalogs.set(scope, catalog);
    }
    return catalog ?? undefined;
  }

  /** Called with a server's name whenever what it offers (tools, prompts, resources) may have changed. */
  onToolsChanged(listener: (server: string) => void): () => void {
    this.toolListeners.add(listener);
    return () => this.toolListeners.delete(listener);
  }

  async onApplicationBootstrap(): Promise<void> {
    // Parse the file now, so a bad file stops the start with a clear error.
    if (this.config.upstreams.serversFile) this.fileServers = await loadServersFile(this.config.upstreams.serversFile);
    this.unsubscribe.push(
      this.bus.subscribe<{ name?: string }>(UPSTREAMS_CHANGED, (event) => {
        if (event.data?.name) this.background(this.reconcile(event.data.name));
      }),
      this.bus.subscribe(RESYNC_TOPIC, () => this.background(this.reconcileAll())),
    );
    // The tables may not exist yet: the app listens before it migrates.
    void this.schema.whenMigrated().then(async () => {
      try {
        if (this.fileServers) await this.applyFile(this.fileServers);
        await this.reconcileAll();
      } catch (error) {
        this.logger.error({ err: error }, 'could not load upstream servers');
      }
    });
  }

  /** Before the database pool closes: stop reacting to changes, stop every upstream. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    for (const off of this.unsubscribe.splice(0)) off();
    await Promise.all([...this.connections.values()].map((c) => c.close()));
    this.connections.clear();
  }

  async list(): Promise<UpstreamServerView[]> {
    const rows = await this.repo.find({ order: { name: 'ASC' } });
    return rows.map((row) => this.view(row));
  }

  async get(name: string): Promise<UpstreamServerView> {
    return this.view(await this.find(name));
  }

  async create(body: unknown): Promise<UpstreamServerView> {
    const input = parseBody(createServerSchema, body);
    try {
      const saved = await this.repo.save(this.repo.create({ ...input, source: 'api' }));
      await this.changed(saved.name);
      return this.view(saved);
    } catch (error) {
      if (isUniqueViolation(error)) throw new AppError(ErrorCode.Conflict, `name: a server named "${input.name}" already exists`, { details: { field: 'name' } });
      throw error;
    }
  }

  async patch(name: string, body: unknown): Promise<UpstreamServerView> {
    const input = parseBody(patchServerSchema, body);
    const row = await this.find(name);
    const next = {
      ...input,
      ...(input.env ? { env: unmask(input.env, row.env) } : {}),
      ...(input.headers ? { headers: unmask(input.headers, row.headers) } : {}),
    };
    parseBody(validateMerged, { transport: next.transport ?? row.transport, command: next.command ?? row.command, url: next.url ?? row.url });
    this.repo.merge(row, next);
    const saved = await this.repo.save(row);
    await this.changed(name);
    return this.view(saved);
  }

  async remove(name: string): Promise<void> {
    const row = await this.find(name);
    await this.repo.remove(row);
    await this.changed(name);
  }

  async setEnabled(name: string, enabled: boolean): Promise<UpstreamServerView> {
    return this.patch(name, { enabled });
  }

  /** The upstream's own tool list as this replica sees it (empty unless connected). */
  async tools(name: string): Promise<{ server: string; status: UpstreamStatus; tools: Tool[] }> {
    const row = await this.find(name);
    const connection = this.connections.get(name);
    return { server: row.name, status: this.statusOf(row), tools: connection?.listTools() ?? [] };
  }

  /** Names of the servers this replica is connected to. */
  connectedServers(): string[] {
    return [...this.connections.values()].filter((c) => c.getClient() !== undefined).map((c) => c.server.name);
  }

  /** Live connection to an enabled, connected server (for routing). */
  connection(name: string): UpstreamConnection | undefined {
    return this.connections.get(name);
  }

  private async find(name: string): Promise<UpstreamServerEntity> {
    const row = /^[a-z0-9][a-z0-9-]{0,62}$/.test(name) ? await this.repo.findOneBy({ name }) : null;
    if (!row) throw new AppError(ErrorCode.NotFound, `server "${name}" does not exist`);
    return row;
  }

  private async changed(name: string): Promise<void> {
    // Reconcile here at once (the caller's next request sees it); the bus tells the others.
    await this.reconcile(name);
    await this.bus.publish(UPSTREAMS_CHANGED, { name });
  }

  private async reconcileAll(): Promise<void> {
    const rows = await this.repo.find();
    const names = new Set(rows.map((r) => r.name));
    for (const name of this.connections.keys()) if (!names.has(name)) await this.reconcile(name);
    await Promise.all(rows.map((row) => this.reconcile(row.name, row)));
  }

  /** Brings this replica's connection for `name` in line with the database. */
  private async reconcile(name: string, known?: UpstreamServerEntity): Promise<void> {
    if (this.stopped) return;
    const row = known ?? (await this.repo.findOneBy({ name }));
    const current = this.connections.get(name);
    if (current && row && current.server.updatedAt.getTime() === row.updatedAt.getTime()) return;
    if (current) {
      this.connections.delete(name);
      await current.close();
      if (current.listTools().length > 0 || !row) this.notifyTools(name);
    }
    this.catalogs.clear();
    if (!row) return;
    const connection = new UpstreamConnection(row, {
      log: {
        info: (o, m) => this.logger.info(o, m),
        warn: (o, m) => this.logger.warn(o, m),
        debug: (o, m) => this.logger.debug(o, m),
      },
      onToolsChanged: (server) => this.notifyTools(server),
      idleTtlMs: this.config.upstreams.stdioIdleTtlMs,
    });
    this.connections.set(name, connection);
    // Connections live longer than the request that created them: run them in the context
    // captured at start, so their log lines do not carry that request's id.
    if (row.enabled) this.detached.runInAsyncScope(() => void connection.connect());
  }

  private background(work: Promise<void>): void {
    work.catch((error: unknown) => {
      if (!this.stopped) this.logger.error({ err: error }, 'could not apply an upstream server change');
    });
  }

  private notifyTools(server: string): void {
    this.catalogs.clear();
    for (const listener of this.toolListeners) listener(server);
  }

  private async applyFile(servers: CreateServerInput[]): Promise<void> {
    const names = new Set(servers.map((s) => s.name));
    await this.repo.manager.transaction(async (tx) => {
      for (const server of servers) {
        const existing = await tx.findOneBy(UpstreamServerEntity, { name: server.name });
        await tx.save(UpstreamServerEntity, { ...(existing ?? {}), ...server, source: 'file' as const });
      }
      // The file is declarative: servers it declared before and no longer lists are removed.
      const stale = (await tx.findBy(UpstreamServerEntity, { source: 'file' })).filter((s) => !names.has(s.name));
      await tx.remove(stale);
    });
    for (const name of names) await this.bus.publish(UPSTREAMS_CHANGED, { name });
    this.logger.info({ servers: [...names] }, `applied ${names.size} server(s) from ${this.config.upstreams.serversFile}`);
  }

  private statusOf(row: UpstreamServerEntity): UpstreamStatus {
    if (!row.enabled) return { state: 'disabled', lastError: null, toolCount: 0, updatedAt: row.updatedAt.toISOString() };
    return this.connections.get(row.name)?.getStatus() ?? { state: 'connecting', lastError: null, toolCount: 0, updatedAt: row.updatedAt.toISOString() };
  }

  private view(row: UpstreamServerEntity): UpstreamServerView {
    return {
      id: row.id,
      name: row.name,
      transport: row.transport,
      command: row.command,
      args: row.args,
      env: mask(row.env),
      cwd: row.cwd,
      url: row.url,
      headers: mask(row.headers),
      enabled: row.enabled,
      description: row.description,
      timeoutMs: row.timeoutMs,
      toolFilter: { allow: row.toolFilter.allow ?? [], deny: row.toolFilter.deny ?? [] },
      source: row.source,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      status: this.statusOf(row),
    };
  }
}
