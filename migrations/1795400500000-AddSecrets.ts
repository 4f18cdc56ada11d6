import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AddSecrets1795400500000 implements MigrationInterface {
  name = 'AddSecrets1795400500000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE secrets (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        owner text NOT NULL,
        server text NOT NULL,
        name text NOT NULL,
        key_id text NOT NULL,
        nonce bytea NOT NULL,
        ciphertext bytea NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT secrets_owner_server_name_key UNIQUE (owner, server, name),
        CONSTRAINT secrets_name_format CHECK (name ~ '^[A-Za-z_][A-Za-z0-9_]{0,127}$'),
        CONSTRAINT secrets_server_fkey FOREIGN KEY (server) REFERENCES upstream_servers (name) ON DELETE CASCADE ON UPDATE CASCADE
      )`);
    await q.query('CREATE INDEX secrets_server ON secrets (server)');
    await q.query(`ALTER TABLE upstream_servers ADD COLUMN inject jsonb NOT NULL DEFAULT '{}'`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE upstream_servers DROP COLUMN inject');
    await q.query('DROP TABLE secrets');
  }
}
