import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 11, `input_required` retries served by any replica: `input_required_relay` is the
 * mailbox through which a replica that received a 2026-07-28 retry (MRTR) hands it to the
 * replica holding the parked call, and gets the round's outcome back. One row per relayed
 * retry: the retry (`request_state`, `input_responses`, the principal and target it was sent
 * for), `heartbeat_at` (null until the owner takes it up, then refreshed while the round runs)
 * and `outcome` (`{ ok, value | error }`, null until done). Rows are deleted by the receiving
 * replica once answered; leftovers expire at `expires_at` (GATEHOUSE_INPUT_REQUIRED_TTL) and are swept.
 */
export class AddInputRequiredRelay1795401700000 implements MigrationInterface {
  name = 'AddInputRequiredRelay1795401700000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE input_required_relay (
      id uuid PRIMARY KEY,
      owner_instance text NOT NULL,
      principal_id text NOT NULL,
      target text NOT NULL,
      request_state text NOT NULL,
      input_responses jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      heartbeat_at timestamptz NULL,
      outcome jsonb NULL,
      expires_at timestamptz NOT NULL
    )`);
    await q.query('CREATE INDEX input_required_relay_expires_at ON input_required_relay (expires_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE input_required_relay');
  }
}
