import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Sessions opened without credentials (or by the anonymous principal of `none`) are capped per
 * client address: the address they were opened from, NULL for sessions of a real principal
 * (and cleared when a principal binds an unauthenticated session).
 */
export class AddSessionClientAddress1795400600000 implements MigrationInterface {
  name = 'AddSessionClientAddress1795400600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE mcp_sessions ADD COLUMN client_address text');
    await q.query('CREATE INDEX mcp_sessions_address_open ON mcp_sessions (client_address, last_seen_at) WHERE closed_at IS NULL AND client_address IS NOT NULL');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX mcp_sessions_address_open');
    await q.query('ALTER TABLE mcp_sessions DROP COLUMN client_address');
  }
}
