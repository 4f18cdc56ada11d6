import type { MigrationInterface, QueryRunner } from 'typeorm';

export class AddPolicies1795400300000 implements MigrationInterface {
  name = 'AddPolicies1795400300000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`
      CREATE TABLE policies (
        id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        subject_type text NOT NULL,
        subject_value text NOT NULL,
        effect text NOT NULL,
        operations text[] NOT NULL,
        targets text[] NOT NULL,
        description text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT policies_subject_type_check CHECK (subject_type IN ('role', 'userId', 'apiKeyId', 'group')),
        CONSTRAINT policies_effect_check CHECK (effect IN ('allow', 'deny'))
      )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE policies');
  }
}
