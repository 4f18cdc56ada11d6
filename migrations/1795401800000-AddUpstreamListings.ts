import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 14, what unconnected users see: `upstream_listings` keeps the last catalog a caller's
 * own connection listed for a per-user server (`oauth`, or placeholders) whose shared
 * connection the upstream refuses, so every replica — a fresh one too — lists that server's
 * tools to users who have not connected yet. `config_key` is the SHA-256 of what identifies
 * the upstream (transport, URL, command, args): a listing of a server since re-pointed
 * elsewhere is ignored. `offerings` holds tools, prompts, resources and resource templates as
 * the upstream listed them (no credentials).
 */
export class AddUpstreamListings1795401800000 implements MigrationInterface {
  name = 'AddUpstreamListings1795401800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE upstream_listings (
      server text PRIMARY KEY,
      config_key text NOT NULL,
      offerings jsonb NOT NULL,
      updated_at timestamptz NOT NULL DEFAULT now()
    )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE upstream_listings');
  }
}
