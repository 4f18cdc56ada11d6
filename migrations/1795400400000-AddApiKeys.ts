import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AddApiKeys1795400400000 implements MigrationInterface {
  name = 'AddApiKeys1795400400000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE api_keys (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        name text NOT NULL,
        prefix text NOT NULL,
        key_hash text NOT NULL,
        user_id uuid REFERENCES users (id) ON DELETE CASCADE,
        role text NOT NULL,
        scopes text[] NOT NULL,
        expires_at timestamptz,
        last_used_at timestamptz,
        revoked_at timestamptz,
        created_by text NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT api_keys_key_hash_key UNIQUE (key_hash),
        CONSTRAINT api_keys_role_check CHECK (role IN ('admin', 'member'))
      )`);
    await q.query('CREATE INDEX api_keys_user_id ON api_keys (user_id)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE api_keys');
  }
}
