import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 11, HTTP upstreams: `redirect_origins`, the origins besides its URL's own that a
 * server's 307/308 redirects may lead to (default none: same origin only).
 */
export class AddServerRedirectOrigins1795400700000 implements MigrationInterface {
  name = 'AddServerRedirectOrigins1795400700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`ALTER TABLE upstream_servers ADD COLUMN redirect_origins text[] NOT NULL DEFAULT '{}'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE upstream_servers DROP COLUMN redirect_origins');
  }
}
