import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * `servers:write` is split from `admin:write` (docs/auth.md): managing upstream servers runs
 * commands on the host and fetches URLs, so it is a permission of its own. API keys stored
 * before the split keep what they could do: every key scoped `admin:write` gains
 * `servers:write`. Keys created afterwards choose. Down: the scope is removed again (older code
 * does not know it).
 */
export class SplitServersWrite1795400600000 implements MigrationInterface {
  name = 'SplitServersWrite1795400600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`UPDATE api_keys SET scopes = array_append(scopes, 'servers:write') WHERE 'admin:write' = ANY(scopes) AND NOT ('servers:write' = ANY(scopes))`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query(`UPDATE api_keys SET scopes = array_remove(scopes, 'servers:write') WHERE 'servers:write' = ANY(scopes)`);
  }
}
