import { Injectable } from '@nestjs/common';
import type { Tool } from '@modelcontextprotocol/client';
import { PinoLogger } from 'nestjs-pino';
import type { OfferingKind } from './offering-kinds.js';
import type { Catalog } from './catalog.js';
import { nameWarnings, type NameWarning } from './tool-names.js';
import type { PooledConnection, ResolvedValues } from './connection-pool.js';
import type { ServerLogEntry } from './server-log.js';
import { toView, type UpstreamServerView } from './server-view.js';
import { UpstreamCatalog } from './upstream-catalog.service.js';
import type { UpstreamConnection, UpstreamStatus } from './upstream-connection.js';
import { UpstreamPoolService } from './upstream-pool.service.js';
import { UpstreamRegistry } from './upstream-registry.service.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';
import { UpstreamSupervisor } from './upstream-supervisor.service.js';

export { PoolExhaustedError, type PooledConnection } from './connection-pool.js';
export type { UpstreamServerView } from './server-view.js';
export { UPSTREAMS_CHANGED } from './upstream-registry.service.js';

/**
 * The upstreams module's one entry point for other modules and the admin API — a facade over
 * {@link UpstreamRegistry} (CRUD, validation, servers file), {@link UpstreamSupervisor} (this
 * replica's connection per server), {@link UpstreamPoolService} (per-caller connections) and
 * {@link UpstreamCatalog} (what clients see). A write commits (announcing itself on the bus in
 * the same transaction), then reconciles this replica at once so the caller's next request sees
 * it; every other replica reconciles from the bus.
 */
@Injectable()
export class UpstreamServersService {
  constructor(
    private readonly registry: UpstreamRegistry,
    private readonly supervisor: UpstreamSupervisor,
    private readonly pool: UpstreamPoolService,
    private readonly catalogs: UpstreamCatalog,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Upstreams');
  }

  /** What a catalog is built from (a method reference made once: {@link catalog} runs several times per call). */
  private readonly catalogSources = () => this.supervisor.catalogSources();

  /**
   * The catalog a client of `/mcp` (scope `''`, aggregated and namespaced) or of
   * `/mcp/<server>` (its own names) sees; `undefined` for an unknown or disabled server.
   * Cached until something changes.
   */
  catalog(scope: string): Catalog | undefined {
    return this.catalogs.get(scope, this.catalogSources);
  }

  /** See {@link UpstreamSupervisor.loadStoredListings}. */
  loadStoredListings(servers: string[]): Promise<void> {
    return this.supervisor.loadStoredListings(servers);
  }

  /** See {@link UpstreamSupervisor.awaitingCallerListing}. */
  awaitingCallerListing(scope: string): string[] {
    return this.supervisor.awaitingCallerListing(scope);
  }

  /**
   * Called with a server's name whenever what it offers may have changed, and which kinds
   * (tools, prompts, resources; absent: any).
   */
  onToolsChanged(listener: (server: string, kinds?: readonly OfferingKind[]) => void): () => void {
    return this.catalogs.onToolsChanged(listener);
  }

  async list(): Promise<UpstreamServerView[]> {
    return (await this.registry.all()).map((row) => this.view(row));
  }

  /** Throws `not_found` (404). */
  async get(name: string): Promise<UpstreamServerView> {
    return this.view(await this.registry.find(name));
  }

  /** Throws `validation_failed` (400), `conflict` (409). */
  async create(body: unknown): Promise<UpstreamServerView> {
    const saved = await this.registry.create(body);
    await this.settle(saved.name);
    return this.view(saved);
  }

  /** Throws `validation_failed` (400), `not_found` (404). */
  async patch(name: string, body: unknown): Promise<UpstreamServerView> {
    const saved = await this.registry.patch(name, body);
    await this.settle(name);
    return this.view(saved);
  }

  /** Throws `not_found` (404). */
  async remove(name: string): Promise<void> {
    await this.registry.remove(name);
    await this.settle(name);
  }

  async setEnabled(name: string, enabled: boolean): Promise<UpstreamServerView> {
    return this.patch(name, { enabled });
  }

  /** The upstream's own tool list as this replica sees it (empty unless connected). Throws `not_found` (404). */
  async tools(name: string): Promise<{ server: string; status: UpstreamStatus; tools: Tool[]; nameWarnings: NameWarning[] }> {
    const row = await this.registry.find(name);
    // What clients are shown instead of a name they would refuse, on /mcp and on /mcp/<name>.
    const aggregated = this.catalog('');
    const own = this.catalog(name);
    const warnings = [...(aggregated ? nameWarnings(aggregated, name) : []), ...(own ? nameWarnings(own) : [])];
    return { server: row.name, status: this.supervisor.statusOf(row), tools: this.supervisor.connection(name)?.listTools() ?? [], nameWarnings: warnings };
  }

  /**
   * The server's recent log lines on this replica (stdio stderr, its notifications/message,
   * connection events), masked, newest last, at most `limit`. Throws `not_found` (404).
   */
  async logs(name: string, limit: number): Promise<{ server: string; items: ServerLogEntry[] }> {
    const row = await this.registry.find(name);
    return { server: row.name, items: this.supervisor.recentLogs(row.name, limit) };
  }

  /**
   * Names of the servers of `scope` (`''`: all) still on their first connection attempt, after
   * waiting up to `maxWaitMs` (ms) for them: a call naming a tool they may offer should say
   * "starting", not "Unknown tool".
   */
  stillStarting(scope: string, maxWaitMs: number): Promise<string[]> {
    return this.supervisor.stillStarting(scope, maxWaitMs);
  }

  /**
   * Whether resource subscriptions work on `scope`: `''` (`/mcp`) when at least one server of
   * this replica declared `resources.subscribe`, else when the server `scope` did (as last connected).
   */
  subscribable(scope: string): boolean {
    if (scope !== '') return this.supervisor.connection(scope)?.supportsSubscribe === true;
    for (const connection of this.supervisor.all()) if (connection.supportsSubscribe) return true;
    return false;
  }

  /** Names of the servers this replica is connected to. */
  connectedServers(): string[] {
    return this.supervisor.connectedServers();
  }

  /** Live connection to a server (for routing); undefined for an unknown one. */
  connection(name: string): UpstreamConnection | undefined {
    return this.supervisor.connection(name);
  }

  /** The server as configured, placeholders intact (undefined: unknown or not loaded). */
  template(name: string): UpstreamServerEntity | undefined {
    return this.supervisor.template(name);
  }

  /**
   * The connection for one caller of a server whose config holds placeholders: one per
   * (server, owner, fingerprint of the resolved values), started on first use, kept while used,
   * closed after GATEHOUSE_POOL_IDLE_TTL unused or when the caller's secrets change. At most
   * GATEHOUSE_POOL_MAX per replica; the least recently used idle one makes room. Throws
   * `PoolExhaustedError` when all are busy, `Error` for a server not loaded.
   */
  async pooled(server: string, owner: string, resolved: ResolvedValues): Promise<PooledConnection> {
    const template = this.supervisor.template(server);
    if (!template) throw new Error(`server "${server}" is not loaded`);
    return this.pool.acquire(template, owner, resolved);
  }

  /**
   * After a committed write: reconcile this replica now. A failure here (the database went away
   * between commit and re-read) is logged, not answered with 500: the change is committed and
   * announced, and the bus event (or `$resync`) reconciles it.
   */
  private async settle(name: string): Promise<void> {
    try {
      await this.supervisor.reconcile(name);
    } catch (error) {
      this.logger.warn({ err: error, server: name }, 'committed an upstream server change; applying it locally failed, the bus will retry');
    }
  }

  private view(row: UpstreamServerEntity): UpstreamServerView {
    return toView(row, this.supervisor.statusOf(row));
  }
}
