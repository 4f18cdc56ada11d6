import { Check, Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

export type UpstreamTransport = 'stdio' | 'streamable_http' | 'sse';

/**
 * How Gatehouse authorizes to an HTTP upstream that needs OAuth (issue 14; docs/upstream-oauth.md).
 *
 * - `mode: 'user'`: each caller's own connection (tokens stored per user, obtained in the
 *   browser at `/connect/<server>` or stored through `PUT /api/v1/me/connections/<server>`),
 *   else the server's shared connection an admin set; sent as `Authorization: Bearer …`.
 * - `mode: 'token_exchange'`: the caller's own incoming token is exchanged (RFC 8693) at
 *   `tokenExchange.tokenEndpoint` for one bound to the upstream.
 *
 * `clientSecret` may be a `${secret:NAME}` placeholder, resolved from the server's shared
 * secrets; a literal is stored as given and never shown back by the API.
 */
export interface UpstreamOAuthConfig {
  mode: 'user' | 'token_exchange';
  /** Scopes to ask for (space-free strings); empty: whatever the upstream's metadata names. */
  scopes?: string[];
  /** Pre-registered client id at the upstream's authorization server. */
  clientId?: string;
  /** Its secret (confidential clients), or a `${secret:NAME}` placeholder. */
  clientSecret?: string;
  /** The authorization server's issuer, when it is not discovered from the upstream (RFC 9728). */
  authorizationServer?: string;
  /** RFC 8693 settings (mode `token_exchange` only). */
  tokenExchange?: {
    tokenEndpoint: string;
    audience?: string;
    resource?: string;
    scope?: string;
    /** Default `urn:ietf:params:oauth:token-type:access_token`. */
    subjectTokenType?: string;
  };
}

export interface ToolFilter {
  allow: string[];
  deny: string[];
}

/** An MCP server behind Gatehouse: a stdio program it runs, or a remote HTTP MCP server. */
@Entity({ name: 'upstream_servers' })
@Index('upstream_servers_name_key', ['name'], { unique: true })
@Check('upstream_servers_transport_check', `transport IN ('stdio', 'streamable_http', 'sse')`)
@Check('upstream_servers_timeout_check', `timeout_ms BETWEEN 100 AND 3600000`)
@Check('upstream_servers_source_check', `source IN ('api', 'file')`)
@Check('upstream_servers_name_format', `name ~ '^[a-z0-9][a-z0-9-]{0,62}$'`)
@Check('upstream_servers_stdio_command', `transport <> 'stdio' OR command IS NOT NULL`)
@Check('upstream_servers_http_url', `transport = 'stdio' OR url IS NOT NULL`)
export class UpstreamServerEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text' })
  name!: string;

  @Column({ type: 'text' })
  transport!: UpstreamTransport;

  @Column({ type: 'text', nullable: true })
  command!: string | null;

  @Column({ type: 'text', array: true, default: () => "'{}'" })
  args!: string[];

  @Column({ type: 'jsonb', default: () => "'{}'" })
  env!: Record<string, string>;

  @Column({ type: 'text', nullable: true })
  cwd!: string | null;

  @Column({ type: 'text', nullable: true })
  url!: string | null;

  @Column({ type: 'jsonb', default: () => "'{}'" })
  headers!: Record<string, string>;

  @Column({ type: 'boolean', default: true })
  enabled!: boolean;

  @Column({ type: 'text', nullable: true })
  description!: string | null;

  @Column({ name: 'timeout_ms', type: 'integer', default: 60_000 })
  timeoutMs!: number;

  @Column({ name: 'tool_filter', type: 'jsonb', default: () => "'{}'" })
  toolFilter!: ToolFilter;

  /**
   * Tool arguments Gatehouse fills in at call time (seed 004's model), e.g.
   * `{ "api_key": "${secret:API_KEY}" }`; they are removed from the schemas clients see.
   */
  @Column({ type: 'jsonb', default: () => "'{}'" })
  inject!: Record<string, string>;

  /**
   * Origins (`https://host[:port]`) besides the URL's own that the server's 307/308 redirects
   * may lead to; empty: redirects are followed within the URL's origin only.
   */
  @Column({ name: 'redirect_origins', type: 'text', array: true, default: () => "'{}'" })
  redirectOrigins!: string[];

  /**
   * Largest single message this server may send, in bytes, overriding
   * GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE (stdio framing) and the HTTP caps
   * GATEHOUSE_HTTP_MAX_EVENT_SIZE / GATEHOUSE_HTTP_MAX_RESPONSE_BYTES for it; null: those settings.
   */
  @Column({ name: 'max_message_bytes', type: 'integer', nullable: true })
  maxMessageBytes!: number | null;
  /** OAuth to the upstream (HTTP transports only); null: none. See {@link UpstreamOAuthConfig}. */
  @Column({ type: 'jsonb', nullable: true })
  oauth!: UpstreamOAuthConfig | null;

  /** `file` when declared in GATEHOUSE_SERVERS_FILE (upserted at every start), else `api`. */
  @Column({ type: 'text', default: 'api' })
  source!: 'api' | 'file';

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
