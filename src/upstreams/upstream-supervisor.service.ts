import { AsyncResource } from 'node:async_hooks';
import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { ReadinessGates, type ReadinessGate } from '../database/readiness-gates.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { blank, hasPlaceholders } from '../secrets/placeholders.js';
import { UPSTREAM_CLOCK, type Clock } from './clock.js';
import { CallerListing, type CatalogSource } from './caller-listing.js';
import { KeyedSerializer } from './keyed-serializer.js';
import { ServerLog, type ServerLogEntry } from './server-log.js';
import { PROCESS_SPAWNER, type ProcessSpawner } from './process-spawner.js';
import { UpstreamCatalog } from './upstream-catalog.service.js';
import { connectionKey, httpOptions, UpstreamConnection, type UpstreamStatus } from './upstream-connection.js';
import { UpstreamPoolService } from './upstream-pool.service.js';
import { UPSTREAMS_CHANGED, UpstreamRegistry } from './upstream-registry.service.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { isConnectTool } from './catalog.js';
import { ListingStore, listingKey, UPSTREAM_LISTING_CHANGED } from './listing-store.js';

/**
 * A server configured per caller (placeholders in env/headers) also runs once without them —
 * blanks in their place — to list what it offers; calls go to the caller's own connection.
 */
function sharedView(row: UpstreamServerEntity): UpstreamServerEntity {
  return hasPlaceholders([row.env, row.headers]) ? Object.assign(new UpstreamServerEntity(), row, { env: blank(row.env), headers: blank(row.headers) }) : row;
}

/** What the catalog takes from a server besides its offerings. */
const catalogKey = (s: UpstreamServerEntity) => JSON.stringify([s.toolFilter, Object.keys(s.inject).sort()]);

/**
 * This replica's one connection per server (enabled or not: a disabled one is a connection in
 * state `disabled`), kept in line with the registry: on the first load, on every
 * `upstreams.changed` (from any replica, this one included) and on `$resync`.
 *
 * Reconciling a server is single-flight per name ({@link KeyedSerializer}): concurrent changes
 * of one server run one after the other, each against the row as it is then, so exactly one
 * connection (one process) is left. A change that does not touch what the connection depends
 * on ({@link connectionKey}: description, timeout, tool filter, inject) is applied in place
 * without a restart; any other change closes the old connection — its calls in flight fail at
 * once, naming the reason — and starts a new one.
 */
@Injectable()
export class UpstreamSupervisor implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly connections = new Map<string, UpstreamConnection>();
  /** Servers as configured (placeholders intact), for per-caller resolution. */
  private readonly templates = new Map<string, UpstreamServerEntity>();
  private readonly serializer = new KeyedSerializer<string>();
  /** Each server's ring of recent log lines; it outlives reconnects and configuration changes, not deletion. */
  private readonly logs = new Map<string, ServerLog>();
  private readonly callerListing = new CallerListing();
  /** Servers whose stored listing this replica has read (or found none of) since it last changed. */
  private readonly listingsRead = new Set<string>();
  /** The JSON of each server's listing as last stored or read, so an unchanged one is not written again. */
  private readonly listingJson = new Map<string, string>();
  private readonly detached = new AsyncResource('gatehouse.upstreams');
  private readonly unsubscribe: (() => void)[] = [];
  private stopped = false;
  private readonly gate: ReadinessGate;

  constructor(
    private readonly registry: UpstreamRegistry,
    private readonly pool: UpstreamPoolService,
    private readonly catalog: UpstreamCatalog,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    @Inject(UPSTREAM_CLOCK) private readonly clock: Clock,
    @Inject(PROCESS_SPAWNER) private readonly spawner: ProcessSpawner,
    private readonly logger: PinoLogger,
    gates: ReadinessGates,
    private readonly listings: ListingStore,
  ) {
    logger.setContext('Upstreams');
    this.gate = gates.register('upstreams');
  }

  async onApplicationBootstrap(): Promise<void> {
    // Parse the servers file now, so a bad file stops the start with a clear error.
    await this.registry.prepare();
    this.unsubscribe.push(
      this.bus.subscribe(UPSTREAMS_CHANGED, (event) => {
        if (event.topic === RESYNC_TOPIC) this.background(this.reconcileAll());
        else this.background(this.reconcile(event.data.name));
      }),
    );
    this.unsubscribe.push(
      this.pool.onListed((name, connection) => {
        if (this.callerListing.adopt(name, this.refused(name), connection.offerings())) {
          this.logger.info({ server: name }, 'listing a per-user server through a caller\'s connection (its shared one is refused)');
          this.catalog.changed(name);
          this.background(this.storeListing(name));
        }
      }),
    );
    this.unsubscribe.push(
      this.bus.subscribe(UPSTREAM_LISTING_CHANGED, (event) => {
        const names = event.topic === RESYNC_TOPIC ? [...this.listingsRead] : [event.data.server];
        for (const name of names) this.listingsRead.delete(name);
        const refused = names.filter((name) => this.refused(name));
        if (refused.length > 0) this.background(this.loadStoredListings(refused));
      }),
    );
    // The tables may not exist yet (the app listens before it migrates): the registry waits.
    void this.registry.firstLoad((rows) => this.reconcileAll(rows)).then(() => this.firstAttempts());
  }

  /**
   * The `upstreams` readiness gate: ok once every enabled server has had its first connection
   * attempt (connected or failed), or GATEHOUSE_READY_UPSTREAMS_TIMEOUT after the first load,
   * whichever comes first — a replica does not take traffic while its servers' tools are still
   * unknown, and a hung server cannot keep it out of service.
   */
  private async firstAttempts(): Promise<void> {
    const waitMs = this.config.upstreams.readyUpstreamsTimeoutMs;
    const pending = [...this.connections.values()].filter((c) => c.starting);
    if (waitMs > 0 && pending.length > 0) {
      this.gate.set('pending', `waiting for the first connection attempt of ${pending.map((c) => c.server.name).join(', ')}`);
      let timer: { cancel(): void } | undefined;
      await Promise.race([Promise.all(pending.map((c) => c.whenAttempted())), new Promise<void>((resolve) => (timer = this.clock.setTimer(resolve, waitMs)))]);
      timer?.cancel();
    }
    this.gate.set('ok');
  }

  /**
   * Connections for `scope` (`''`: every server; else the named one) whose first connection
   * attempt is still running, after waiting up to `maxWaitMs` for them. Resolves at once when
   * none is starting.
   */
  async stillStarting(scope: string, maxWaitMs: number): Promise<string[]> {
    const starting = () => [...this.connections.values()].filter((c) => c.starting && (scope === '' || c.server.name === scope));
    const now = starting();
    if (now.length === 0) return [];
    let timer: { cancel(): void } | undefined;
    await Promise.race([Promise.all(now.map((c) => c.whenAttempted())), new Promise<void>((resolve) => (timer = this.clock.setTimer(resolve, maxWaitMs)))]);
    timer?.cancel();
    return starting().map((c) => c.server.name);
  }

  /** Before the database pool closes: stop reacting to changes, stop every upstream. */
  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    this.registry.stop();
    for (const off of this.unsubscribe.splice(0)) off();
    const all = [...this.connections.values()];
    this.connections.clear();
    await Promise.all(all.map((c) => c.close('the gateway is shutting down')));
  }

  /** Every connection (for the catalog). */
  all(): IterableIterator<UpstreamConnection> {
    return this.connections.values();
  }

  /** What the catalog lists: every connection, with a caller's listing standing in for a refused one (see {@link CallerListing}). */
  *catalogSources(): Generator<CatalogSource> {
    for (const [name, connection] of this.connections) yield this.callerListing.source(connection, this.refused(name), this.templates.get(name));
  }

  /**
   * Servers of `scope` ('' = all) whose shared connection is refused and that no caller's
   * connection has listed yet: a caller listing them should list through their own.
   */
  awaitingCallerListing(scope: string): string[] {
    const names: string[] = [];
    for (const name of this.connections.keys()) {
      if (scope !== '' && scope !== name) continue;
      if (!this.callerListing.has(name) && this.refused(name)) names.push(name);
    }
    return names;
  }

  /**
   * Reads the stored listing (see {@link ListingStore}) of each of `servers` this replica has not
   * read since it last changed, and adopts it for a server whose shared connection is refused —
   * so a fresh replica lists a per-user server's tools before any caller connects there. A
   * database failure is logged, not thrown: the server stays listed as before.
   */
  async loadStoredListings(servers: string[]): Promise<void> {
    const wanted = servers.filter((name) => !this.listingsRead.has(name) && this.templates.has(name)).map((name) => ({ name, key: listingKey(this.templates.get(name)!) }));
    if (wanted.length === 0) return;
    let found: Awaited<ReturnType<ListingStore['read']>>;
    try {
      found = await this.listings.read(wanted);
    } catch (error) {
      this.logger.warn({ err: error, servers: wanted.map((w) => w.name) }, 'could not read the stored listings of per-user servers');
      return;
    }
    for (const { name } of wanted) {
      this.listingsRead.add(name);
      const offerings = found.get(name);
      const json = offerings && JSON.stringify(offerings);
      if (!offerings || json === this.listingJson.get(name)) continue;
      if (this.callerListing.adopt(name, this.refused(name), offerings)) {
        this.listingJson.set(name, json!);
        this.catalog.changed(name);
      }
    }
  }

  /** Stores what was adopted for `name` for every replica (unless it is what was last stored or read), and tells them. */
  private async storeListing(name: string): Promise<void> {
    const offerings = this.callerListing.adopted(name);
    const template = this.templates.get(name);
    if (!offerings || !template) return;
    const json = JSON.stringify(offerings);
    if (json === this.listingJson.get(name)) return;
    this.listingJson.set(name, json);
    await this.listings.write(name, listingKey(template), offerings);
    await this.bus.publish(UPSTREAM_LISTING_CHANGED, { server: name });
  }

  private refused(name: string): boolean {
    return CallerListing.refused(this.templates.get(name), this.connections.get(name));
  }

  /** The connection to `name` (any state), or undefined for an unknown server. */
  connection(name: string): UpstreamConnection | undefined {
    return this.connections.get(name);
  }

  /** The server as configured, placeholders intact (undefined: unknown or not loaded). */
  template(name: string): UpstreamServerEntity | undefined {
    return this.templates.get(name);
  }

  /** Names of the servers this replica is connected to. */
  connectedServers(): string[] {
    return [...this.connections.values()].filter((c) => c.state === 'connected').map((c) => c.server.name);
  }

  /** The newest `limit` lines of the server's log on this replica, newest last (empty: nothing yet, or unknown). */
  recentLogs(name: string, limit: number): ServerLogEntry[] {
    return this.logs.get(name)?.recent(limit) ?? [];
  }

  /** This replica's status of the server stored as `row`. */
  statusOf(row: UpstreamServerEntity): UpstreamStatus {
    if (!row.enabled) return { state: 'disabled', lastError: null, lastRecovery: null, toolCount: 0, updatedAt: row.updatedAt.toISOString() };
    const status = this.connections.get(row.name)?.getStatus() ?? { state: 'connecting', lastError: null, lastRecovery: null, toolCount: 0, updatedAt: row.updatedAt.toISOString() };
    if (!this.refused(row.name)) return status;
    const listed = [...this.catalogSources()].find((s) => s.server.name === row.name)?.offerings().tools.filter((t) => !isConnectTool(t)).length ?? 0;
    return { ...status, state: 'needs_user_credentials', toolCount: listed };
  }

  /**
   * Brings this replica's connection for `name` in line with the database (`known`: the row
   * just read, or null when it is gone). Single-flight per name; resolves once a run that
   * started after this call is over. Rejects if the database cannot be read.
   */
  reconcile(name: string, known?: UpstreamServerEntity | null): Promise<void> {
    return this.serializer.run(name, () => this.apply(name, known));
  }

  /** Reconciles every stored server, and drops the connections of servers that are gone. */
  async reconcileAll(rows?: UpstreamServerEntity[]): Promise<void> {
    const list = rows ?? (await this.registry.all());
    const names = new Set(list.map((r) => r.name));
    await Promise.all([
      ...[...this.connections.keys()].filter((n) => !names.has(n)).map((n) => this.reconcile(n, null)),
      ...list.map((row) => this.reconcile(row.name, row)),
    ]);
  }

  private async apply(name: string, known: UpstreamServerEntity | null | undefined): Promise<void> {
    if (this.stopped) return;
    const row = known !== undefined ? known : await this.registry.findRow(name);
    if (this.stopped) return;
    const current = this.connections.get(name);
    const before = this.templates.get(name);
    if (!row) {
      this.templates.delete(name);
      this.connections.delete(name);
      this.logs.delete(name);
      if (current) this.catalog.changed(name);
      await Promise.all([current?.close('the server was deleted'), this.pool.retire(name, undefined, 'the server was deleted')]);
      return;
    }
    this.templates.set(name, row);
    const shared = sharedView(row);
    if (current && connectionKey(current.server) === connectionKey(shared)) {
      // Nothing the live connection depends on changed: no restart.
      const listed = catalogKey(current.server) !== catalogKey(shared);
      current.update(shared);
      if (listed) this.catalog.changed(name);
      if (before && connectionKey(before) !== connectionKey(row)) await this.pool.retire(name, undefined, 'the server configuration changed');
      return;
    }
    const next = new UpstreamConnection(shared, {
      log: {
        info: (o, m) => this.logger.info(o, m),
        warn: (o, m) => this.logger.warn(o, m),
        debug: (o, m) => this.logger.debug(o, m),
      },
      onToolsChanged: (server, kinds) => this.catalog.changed(server, kinds),
      idleTtlMs: this.config.upstreams.stdioIdleTtlMs,
      maxTotalTimeoutMs: this.config.upstreams.maxTotalTimeoutMs,
      listLimits: this.config.upstreams.listLimits,
      clock: this.clock,
      spawner: this.spawner,
      maxMessageBytes: this.config.upstreams.maxMessageBytes,
      serverLog: this.serverLog(name),
      http: httpOptions(this.config),
    });
    this.connections.set(name, next);
    this.callerListing.forget(name);
    this.listingsRead.delete(name);
    this.listingJson.delete(name);
    this.catalog.invalidate();
    if (current) {
      const reason = row.enabled ? 'the server configuration changed' : 'the server was disabled';
      const offered = current.listTools().length > 0;
      // The old process stops before the new one starts.
      await Promise.all([current.close(reason), this.pool.retire(name, undefined, reason)]);
      if (offered) this.catalog.changed(name);
    }
    if (this.stopped) {
      await next.close('the gateway is shutting down');
      return;
    }
    // Connections live longer than the request that created them: run them in the context
    // captured at start, so their log lines do not carry that request's id.
    if (row.enabled) this.detached.runInAsyncScope(() => void next.connect());
  }

  private serverLog(name: string): ServerLog {
    let log = this.logs.get(name);
    if (!log) this.logs.set(name, (log = new ServerLog(() => this.clock.now())));
    return log;
  }

  private background(work: Promise<void>): void {
    work.catch((error: unknown) => {
      if (!this.stopped) this.logger.error({ err: error }, 'could not apply an upstream server change');
    });
  }
}
