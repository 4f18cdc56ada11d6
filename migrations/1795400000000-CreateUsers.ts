import type { MigrationInterface, QueryRunner } from 'typeorm';

export class CreateUsers1795400000000 implements MigrationInterface {
  name = 'CreateUsers1795400000000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE users (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        issuer text NOT NULL,
        subject text NOT NULL,
        email text,
        display_name text,
        roles text[] NOT NULL DEFAULT '{member}',
        groups text[] NOT NULL DEFAULT '{}',
        disabled boolean NOT NULL DEFAULT false,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        last_seen_at timestamptz
      )`);
    await q.query('CREATE UNIQUE INDEX users_issuer_subject_key ON users (issuer, subject)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE users');
  }
}
