import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 10, credentials: an API key remembers the key that created it (`created_by_key_id`), so
 * revoking a key revokes the keys it minted. Keys minted by the anonymous principal of
 * `MCP_AUTH_STRATEGY=none` (`created_by = 'none:anonymous'`) belong to nobody and would outlive
 * a switch to real authentication as admin keys: they are revoked here, and no longer minted.
 */
export class AddApiKeyLineage1795400620000 implements MigrationInterface {
  name = 'AddApiKeyLineage1795400620000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE api_keys ADD COLUMN created_by_key_id uuid');
    await q.query(
      'ALTER TABLE api_keys ADD CONSTRAINT api_keys_created_by_key_id_fkey FOREIGN KEY (created_by_key_id) REFERENCES api_keys (id) ON DELETE SET NULL',
    );
    await q.query('CREATE INDEX api_keys_created_by_key_id ON api_keys (created_by_key_id)');
    await q.query("UPDATE api_keys SET revoked_at = now() WHERE created_by = 'none:anonymous' AND revoked_at IS NULL");
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP INDEX api_keys_created_by_key_id');
    await q.query('ALTER TABLE api_keys DROP CONSTRAINT api_keys_created_by_key_id_fkey');
    await q.query('ALTER TABLE api_keys DROP COLUMN created_by_key_id');
  }
}
