import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AddMcpSessions1795400200000 implements MigrationInterface {
  name = 'AddMcpSessions1795400200000';

  async up(q: QueryRunner): Promise<void> {
    // `id` is the SHA-256 of the Mcp-Session-Id the client holds: a database read does not
    // hand out live session ids.
    await q.query(`
      CREATE TABLE mcp_sessions (
        id text PRIMARY KEY,
        principal text NOT NULL,
        endpoint text NOT NULL,
        protocol_version text NOT NULL,
        client_info jsonb NOT NULL DEFAULT '{}',
        capabilities jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz NOT NULL DEFAULT now(),
        expires_at timestamptz NOT NULL,
        closed_at timestamptz
      )`);
    await q.query('CREATE INDEX mcp_sessions_principal_open ON mcp_sessions (principal) WHERE closed_at IS NULL');
    await q.query('CREATE INDEX mcp_sessions_expires_at ON mcp_sessions (expires_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE mcp_sessions');
  }
}
