import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 11, per-server message size: `max_message_bytes`, the largest single message a server
 * may send (bytes), overriding GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE and the HTTP response caps
 * for it; null (the default, every existing server): those settings apply.
 */
export class AddServerMaxMessageBytes1795401400000 implements MigrationInterface {
  name = 'AddServerMaxMessageBytes1795401400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE upstream_servers ADD COLUMN max_message_bytes integer NULL');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE upstream_servers DROP COLUMN max_message_bytes');
  }
}
