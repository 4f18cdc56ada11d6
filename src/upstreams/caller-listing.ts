import { hasPlaceholders } from '../secrets/placeholders.js';
import { connectTool } from './catalog.js';
import type { UpstreamConnection } from './upstream-connection.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';

type Offerings = ReturnType<UpstreamConnection['offerings']>;

/** What the catalog reads from a connection. */
export type CatalogSource = Pick<UpstreamConnection, 'server' | 'offerings'>;

/**
 * `HTTP 401 …` / `HTTP 403 …` as {@link describeUpstreamError} words an upstream's refusal —
 * also inside a wrapper (`ERA_NEGOTIATION_FAILED: … HTTP 401 Unauthorized`: a modern upstream
 * refusing the `server/discover` probe).
 */
const REFUSED = /(^|: )HTTP 40[13]\b/;

/**
 * Listing through a caller's connection, for an HTTP server configured per user
 * (`Authorization: Bearer ${secret:TOKEN}`) whose shared connection — started with blanks in
 * the placeholders' place, to list what it offers — is refused (HTTP 401/403): such a server
 * would otherwise list nothing, and no one could call it. Once a caller who has the values
 * connects, what their connection listed stands in for the server's offerings (a server lists
 * the same tools to every user it admits; policies still filter them per principal), and the
 * server's status says `needs_user_credentials` rather than `error`. Servers with `oauth` (each
 * caller's own token) are listed the same way.
 */
export class CallerListing {
  private readonly borrowed = new Map<string, Offerings>();

  /** Whether `shared`, the listing connection of `template`, is refused for want of a user's values. */
  static refused(template: UpstreamServerEntity | undefined, shared: UpstreamConnection | undefined): boolean {
    // `connecting`: retrying after the refusal (lastError still says why) — the server's tools must not vanish meanwhile.
    if (!template || !shared || template.transport === 'stdio' || (shared.state !== 'error' && shared.state !== 'connecting')) return false;
    return REFUSED.test(shared.getStatus().lastError ?? '') && (hasPlaceholders([template.env, template.headers]) || template.oauth != null);
  }

  /** A caller's connection to `server` listed `offerings`: adopt them if the shared one is refused. Returns whether it did. */
  adopt(server: string, refused: boolean, offerings: Offerings): boolean {
    if (!refused) return false;
    const count = offerings.tools.length + offerings.prompts.length + offerings.resources.length + offerings.resourceTemplates.length;
    if (count === 0) return false;
    this.borrowed.set(server, offerings);
    return true;
  }

  /** Forgets what was adopted for `server` (its configuration changed, or it is gone). */
  forget(server: string): void {
    this.borrowed.delete(server);
  }

  /** Whether offerings were adopted for `server`. */
  has(server: string): boolean {
    return this.borrowed.has(server);
  }

  /** The offerings adopted for `server` (undefined: none), e.g. to store them for other replicas. */
  adopted(server: string): Offerings | undefined {
    return this.borrowed.get(server);
  }

  /**
   * `connection` as the catalog reads it: with the adopted offerings while it is `refused`; a
   * refused server with `oauth` and nothing adopted is listed with Gatehouse's connect tool
   * alone (see {@link connectTool}; the server's tool filter does not apply to it).
   */
  source(connection: UpstreamConnection, refused: boolean, template?: UpstreamServerEntity): CatalogSource {
    if (!refused) return connection;
    const adopted = this.borrowed.get(connection.server.name);
    if (adopted) return { server: connection.server, offerings: () => adopted };
    if (template?.oauth == null) return connection;
    const offerings: Offerings = { tools: [connectTool(connection.server.name)], prompts: [], resources: [], resourceTemplates: [] };
    return { server: Object.assign(Object.create(Object.getPrototypeOf(connection.server) as object) as UpstreamServerEntity, connection.server, { toolFilter: { allow: [], deny: [] } }), offerings: () => offerings };
  }
}
