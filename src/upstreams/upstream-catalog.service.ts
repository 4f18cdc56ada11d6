import { Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { buildCatalog, type Catalog } from './catalog.js';
import { NameWarningLog } from './tool-names.js';
import type { CatalogSource } from './caller-listing.js';
import type { OfferingKind } from './offering-kinds.js';

/**
 * The catalogs clients of `/mcp` see, built from this replica's connections and cached until
 * something changes; and the listeners told when a server's offerings may have changed.
 */
@Injectable()
export class UpstreamCatalog {
  /** Built catalogs by scope ('' = every server, aggregated; null = no such server). */
  private readonly built = new Map<string, Catalog | null>();
  private readonly listeners = new Set<(server: string, kinds?: readonly OfferingKind[]) => void>();
  /** Renamed or over-long exposed names, logged once each (see tool-names.ts). */
  private readonly nameWarnings: NameWarningLog;

  constructor(logger: PinoLogger) {
    logger.setContext('Upstreams');
    this.nameWarnings = new NameWarningLog((w) => logger.warn({ server: w.server, kind: w.kind, name: w.name, original: w.original, code: w.code }, w.message));
  }

  /**
   * The catalog of `scope` (`''`: aggregated and namespaced; a server name: its own names)
   * from the sources `connections()` yields (asked only when the catalog is built, not on
   * every call: a lookup on the hot path allocates nothing); `undefined` for an unknown or
   * disabled server. Cached until {@link invalidate} or {@link changed}.
   */
  get(scope: string, connections: () => Iterable<CatalogSource>): Catalog | undefined {
    let catalog = this.built.get(scope);
    if (catalog === undefined) {
      const sources = [...connections()]
        .filter((c) => c.server.enabled && (scope === '' || c.server.name === scope))
        .sort((a, b) => a.server.name.localeCompare(b.server.name))
        .map((c) => ({ server: c.server.name, toolFilter: c.server.toolFilter, injected: Object.keys(c.server.inject), ...c.offerings() }));
      catalog = scope !== '' && sources.length === 0 ? null : buildCatalog(sources, scope === '' ? 'aggregate' : 'single');
      if (catalog) this.nameWarnings.check(catalog);
      this.built.set(scope, catalog);
    }
    return catalog ?? undefined;
  }

  /** Registers `listener` for {@link changed} (`kinds` absent: any may have changed); returns the unsubscribe function. */
  onToolsChanged(listener: (server: string, kinds?: readonly OfferingKind[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Drops the built catalogs (which servers exist changed, not what one offers). */
  invalidate(): void {
    this.built.clear();
  }

  /** What `server` offers (its `kinds`; absent: any) may have changed: drop the catalogs and tell the listeners. */
  changed(server: string, kinds?: readonly OfferingKind[]): void {
    this.built.clear();
    for (const listener of this.listeners) listener(server, kinds);
  }
}
