import { Check, Column, CreateDateColumn, Entity, Index, PrimaryGeneratedColumn, UpdateDateColumn } from 'typeorm';

/** `active`: usable (refreshed when needed); `needs_reauth`: the provider refused a refresh or the token, the user must connect again. */
export type ConnectionStatus = 'active' | 'needs_reauth';
/** Who stored the connection: the user through the API, an admin (shared), or the browser connect flow. */
export type ConnectionSource = 'api' | 'admin' | 'flow';

/**
 * One OAuth connection to an upstream server: a user's own (`owner` = their user id, or the
 * principal id of an ownerless principal) or the server's shared one (`owner` = `*`), used by
 * callers without their own. Tokens and the client secret are sealed (see `token-sealing.ts`);
 * nothing here is ever returned by the API as stored.
 */
@Entity({ name: 'upstream_oauth_connections' })
@Index('upstream_oauth_connections_server_owner_key', ['server', 'owner'], { unique: true })
@Index('upstream_oauth_connections_owner', ['owner'])
@Check('upstream_oauth_connections_status_check', `status IN ('active', 'needs_reauth')`)
@Check('upstream_oauth_connections_source_check', `source IN ('api', 'admin', 'flow')`)
export class UpstreamOAuthConnectionEntity {
  @PrimaryGeneratedColumn('uuid')
  id!: string;

  @Column({ type: 'text' })
  server!: string;

  /** User id (or principal id); `*` for the shared connection. */
  @Column({ type: 'text' })
  owner!: string;

  /** The server's URL when the tokens were stored: they are used only while the server still has it. */
  @Column({ name: 'server_url', type: 'text' })
  serverUrl!: string;

  /** Who the tokens act as at the provider (a `sub`, login or email), when known; shown to the user. */
  @Column({ type: 'text', nullable: true })
  account!: string | null;

  @Column({ type: 'text', array: true, default: () => "'{}'" })
  scopes!: string[];

  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true })
  expiresAt!: Date | null;

  @Column({ type: 'text', default: 'active' })
  status!: ConnectionStatus;

  /** Why it needs re-authorization (the provider's error code and description), never a token. */
  @Column({ name: 'status_reason', type: 'text', nullable: true })
  statusReason!: string | null;

  @Column({ type: 'text' })
  source!: ConnectionSource;

  @Column({ name: 'access_token_sealed', type: 'text' })
  accessTokenSealed!: string;

  @Column({ name: 'refresh_token_sealed', type: 'text', nullable: true })
  refreshTokenSealed!: string | null;

  @Column({ type: 'text', nullable: true })
  issuer!: string | null;

  @Column({ name: 'token_endpoint', type: 'text', nullable: true })
  tokenEndpoint!: string | null;

  @Column({ name: 'revocation_endpoint', type: 'text', nullable: true })
  revocationEndpoint!: string | null;

  @Column({ name: 'client_id', type: 'text', nullable: true })
  clientId!: string | null;

  @Column({ name: 'client_secret_sealed', type: 'text', nullable: true })
  clientSecretSealed!: string | null;

  /** `client_secret_basic`, `client_secret_post` or `none`. */
  @Column({ name: 'token_endpoint_auth_method', type: 'text', nullable: true })
  tokenEndpointAuthMethod!: string | null;

  /** The RFC 8707 resource the tokens are bound to (the upstream's URL or its metadata's `resource`). */
  @Column({ type: 'text', nullable: true })
  resource!: string | null;

  /** Scopes last asked for after an `insufficient_scope` (step-up): the same set asked again is an error, not a loop. */
  @Column({ name: 'step_up_scopes', type: 'text', array: true, nullable: true })
  stepUpScopes!: string[] | null;

  @Column({ name: 'refreshed_at', type: 'timestamptz', nullable: true })
  refreshedAt!: Date | null;

  @CreateDateColumn({ name: 'created_at', type: 'timestamptz' })
  createdAt!: Date;

  @UpdateDateColumn({ name: 'updated_at', type: 'timestamptz' })
  updatedAt!: Date;
}
