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
import { blank, fingerprint, hasPlaceholders } from '../secrets/placeholders.js';
import { buildCatalog, type Catalog } from './catalog.js';
import { NameWarningLog } from './tool-names.js';
import { loadServersFile } from './servers-file.js';
import { UpstreamConnection, type UpstreamStatus } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { createServerSchema, patchServerSchema, validateMerged, type CreateServerInput } from './upstream-server.schema.js';

/** Bus topic: `{ name }` of a server that was created, changed or deleted. */
export const UPSTREAMS_CHANGED = 'upstreams.changed';
/** Bus topic: `{ server, owner }` whose secrets changed (`owner` `*`: the server's shared ones). */
export const SECRETS_CHANGED = 'secrets.changed';

/** Every per-caller connection is in use and GATEHOUSE_POOL_MAX is reached. */
export class PoolExhaustedError extends Error {}

/** A connection to a per-caller server, with the caller's resolved env and headers. */
interface PoolEntry {
  server: string;
  owner: string;
  connection: UpstreamConnection;
  ready: Promise<void>;
  inflight: number;
  lastUsed: number;
}

export interface PooledConnection {
  connection: UpstreamConnection;
  release: () => void;
}

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
  inject: Record<string, string>;
  source: UpstreamServerEntity['source'];
  createdAt: string;
  updatedAt: string;
  status: UpstreamStatus;
}

/**
 * Values under credential-like keys (`Authorization`, `GITHUB_TOKEN`…) are never shown back —
 * unless all they hold besides placeholders is a short literal (`Bearer ${secret:TOKEN}`),
 * which shows how the secret is used and reveals nothing.
 */
function mask(map: Record<string, string>): Record<string, string> {
  const safe = (v: string) => hasPlaceholders([{ v }]) && blank({ v }).v.trim().length < 8;
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, isSensitiveKey(k) && !safe(v) ? REDACTED : v]));
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
  /** Servers as configured (placeholders intact), for per-caller resolution. */
  private readonly templates = new Map<string, UpstreamServerEntity>();
  /** Per-caller connections, least recently used first (`server\nowner\nfingerprint`). */
  private readonly pool = new Map<string, PoolEntry>();
  private reaper: NodeJS.Timeout | undefined;
  private readonly toolListeners = new Set<(server: string) => void>();
  /** Built catalogs by scope ('' = every server, aggregated), dropped on any change. */
  private readonly catalogs = new Map<string, Catalog | null>();
  private readonly nameWarnings = new NameWarningLog((w) => this.logger.warn({ server: w.server, kind: w.kind, name: w.name, original: w.original, code: w.code }, w.message));
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
        .map((c) => ({ server: c.server.name, toolFilter: c.server.toolFilter, injected: Object.keys(c.server.inject), ...c.offerings() }));
      catalog = scope !== '' && sources.length === 0 ? null : buildCatalog(sources, scope === '' ? 'aggregate' : 'single');
      if (catalog) this.nameWarnings.check(catalog);
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
      // A changed or deleted secret retires the processes started with the old value.
      this.bus.subscribe<{ server?: string; owner?: string }>(SECRETS_CHANGED, (event) => {
        if (event.data?.server) this.background(this.retire(event.data.server, event.data.owner === '*' ? undefined : event.data.owner));
      }),
    );
    const ttl = this.config.upstreams.poolIdleTtlMs;
    this.reaper = setInterval(() => this.background(this.reap(ttl)), Math.min(30_000, Math.max(500, ttl / 2)));
    this.reaper.unref();
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
    clearInterval(this.reaper);
    for (const off of this.unsubscribe.splice(0)) off();
    const pooled = [...this.pool.values()].map((e) => e.connection);
    this.pool.clear();
    await Promise.all([...this.connections.values(), ...pooled].map((c) => c.close()));
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
      ...(input.inject ? { inject: unmask(input.inject, row.inject) } : {}),
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

  /** The server as configured, placeholders intact (undefined: unknown or not loaded). */
  template(name: string): UpstreamServerEntity | undefined {
    return this.templates.get(name);
  }

  /**
   * The connection for one caller of a server whose config holds placeholders: one per
   * (server, owner, fingerprint of the resolved values), started on first use, kept while used,
   * closed after GATEHOUSE_POOL_IDLE_TTL unused or when the caller's secrets change. At most
   * GATEHOUSE_POOL_MAX per replica; the least recently used idle one makes room.
   */
  async pooled(server: string, owner: string, resolved: { env: Record<string, string>; headers: Record<string, string> }): Promise<PooledConnection> {
    const template = this.templates.get(server);
    if (!template) throw new Error(`server "${server}" is not loaded`);
    const key = `${server}\n${owner}\n${fingerprint([resolved.env, resolved.headers])}`;
    let entry = this.pool.get(key);
    if (entry) {
      this.pool.delete(key); // most recently used last
      this.pool.set(key, entry);
    } else {
      if (this.pool.size >= this.config.upstreams.poolMax) await this.evictOne();
      const row = Object.assign(new UpstreamServerEntity(), template, { env: resolved.env, headers: resolved.headers });
      const connection = new UpstreamConnection(row, {
        log: {
          info: (o, m) => this.logger.debug({ ...o, pooled: true }, m),
          warn: (o, m) => this.logger.warn({ ...o, pooled: true }, m),
          debug: (o, m) => this.logger.debug({ ...o, pooled: true }, m),
        },
        onToolsChanged: () => undefined,
      });
      entry = { server, owner, connection, ready: this.detached.runInAsyncScope(() => connection.connect()), inflight: 0, lastUsed: Date.now() };
      this.pool.set(key, entry);
    }
    const used = entry;
    used.inflight++;
    used.lastUsed = Date.now();
    await used.ready;
    return {
      connection: used.connection,
      release: () => {
        used.inflight--;
        used.lastUsed = Date.now();
      },
    };
  }

  /** Closes the per-caller connections of `server` (of one owner, or all). */
  private async retire(server: string, owner?: string): Promise<void> {
    const doomed: UpstreamConnection[] = [];
    for (const [key, entry] of this.pool) {
      if (entry.server === server && (owner === undefined || entry.owner === owner)) {
        this.pool.delete(key);
        doomed.push(entry.connection);
      }
    }
    await Promise.all(doomed.map((c) => c.close()));
  }

  private async evictOne(): Promise<void> {
    for (const [key, entry] of this.pool) {
      if (entry.inflight > 0) continue;
      this.pool.delete(key);
      await entry.connection.close();
      return;
    }
    throw new PoolExhaustedError(
      `all ${this.config.upstreams.poolMax} per-user upstream connections of this replica are busy (GATEHOUSE_POOL_MAX); try again shortly`,
    );
  }

  private async reap(ttlMs: number): Promise<void> {
    const now = Date.now();
    const doomed: UpstreamConnection[] = [];
    for (const [key, entry] of this.pool) {
      if (entry.inflight === 0 && now - entry.lastUsed >= ttlMs) {
        this.pool.delete(key);
        doomed.push(entry.connection);
      }
    }
    await Promise.all(doomed.map((c) => c.close()));
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
    await this.retire(name);
    if (!row) {
      this.templates.delete(name);
      return;
    }
    this.templates.set(name, row);
    // A server configured per caller (placeholders) also runs once without them — blanks in
    // their place — to list what it offers; calls go to the caller's own connection.
    const shared = hasPlaceholders([row.env, row.headers]) ? Object.assign(new UpstreamServerEntity(), row, { env: blank(row.env), headers: blank(row.headers) }) : row;
    const connection = new UpstreamConnection(shared, {
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
      inject: mask(row.inject),
      source: row.source,
      createdAt: row.createdAt.toISOString(),
      updatedAt: row.updatedAt.toISOString(),
      status: this.statusOf(row),
    };
  }
}
