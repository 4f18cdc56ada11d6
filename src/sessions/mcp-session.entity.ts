import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** A legacy-era (2025) MCP session: a row, so any replica can serve it. */
@Entity({ name: 'mcp_sessions' })
@Index('mcp_sessions_principal_open', ['principal'], { where: 'closed_at IS NULL' })
@Index('mcp_sessions_expires_at', ['expiresAt'])
@Index('mcp_sessions_address_open', ['clientAddress', 'lastSeenAt'], { where: 'closed_at IS NULL AND client_address IS NOT NULL' })
export class McpSessionEntity {
  /** SHA-256 (hex) of the Mcp-Session-Id. */
  @PrimaryColumn({ type: 'text' })
  id!: string;

  @Column({ type: 'text' })
  principal!: string;

  /** `''` for `/mcp`, else the server name of `/mcp/<server>`. */
  @Column({ type: 'text' })
  endpoint!: string;

  @Column({ name: 'protocol_version', type: 'text' })
  protocolVersion!: string;

  @Column({ name: 'client_info', type: 'jsonb', default: () => "'{}'" })
  clientInfo!: Record<string, unknown>;

  @Column({ type: 'jsonb', default: () => "'{}'" })
  capabilities!: Record<string, unknown>;

  /** Client address of a session opened without credentials (capped per address); NULL otherwise. */
  @Column({ name: 'client_address', type: 'text', nullable: true })
  clientAddress!: string | null;

  @Column({ name: 'created_at', type: 'timestamptz', default: () => 'now()' })
  createdAt!: Date;

  @Column({ name: 'last_seen_at', type: 'timestamptz', default: () => 'now()' })
  lastSeenAt!: Date;

  @Column({ name: 'expires_at', type: 'timestamptz' })
  expiresAt!: Date;

  @Column({ name: 'closed_at', type: 'timestamptz', nullable: true })
  closedAt!: Date | null;
}
