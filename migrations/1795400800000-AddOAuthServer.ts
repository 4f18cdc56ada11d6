import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 13, Gatehouse as the OAuth 2.1 authorization server: every oidc-provider model (clients,
 * grants, authorization and device codes, sessions, interactions, access and refresh tokens, …)
 * in one table keyed by (model, id), with the secondary keys oidc-provider looks up by
 * (`grant_id`, `uid`, `user_code`) and those Gatehouse lists by (`account_id`, `client_id`) as
 * columns; and the authorization server's keys (JWT signing keys, cookie keys), sealed with the
 * GATEHOUSE_ENCRYPTION_KEYS ring. Nothing of the authorization server lives in a replica's memory.
 */
export class AddOAuthServer1795400800000 implements MigrationInterface {
  name = 'AddOAuthServer1795400800000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE oauth_models (
      model text NOT NULL,
      id text NOT NULL,
      payload jsonb NOT NULL,
      grant_id text,
      uid text,
      user_code text,
      account_id text,
      client_id text,
      source text,
      consumed_at timestamptz,
      expires_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (model, id)
    )`);
    await q.query('CREATE INDEX oauth_models_grant_id ON oauth_models (grant_id) WHERE grant_id IS NOT NULL');
    await q.query('CREATE UNIQUE INDEX oauth_models_uid ON oauth_models (model, uid) WHERE uid IS NOT NULL');
    await q.query('CREATE UNIQUE INDEX oauth_models_user_code ON oauth_models (model, user_code) WHERE user_code IS NOT NULL');
    await q.query('CREATE INDEX oauth_models_account ON oauth_models (model, account_id, client_id) WHERE account_id IS NOT NULL');
    await q.query('CREATE INDEX oauth_models_expires_at ON oauth_models (expires_at) WHERE expires_at IS NOT NULL');
    await q.query(`CREATE TABLE oauth_keys (
      kid text PRIMARY KEY,
      use text NOT NULL CHECK (use IN ('sig', 'cookie')),
      alg text,
      public_jwk jsonb,
      ring_key_id text NOT NULL,
      nonce bytea NOT NULL,
      ciphertext bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      active_from timestamptz NOT NULL DEFAULT now(),
      retired_at timestamptz,
      expires_at timestamptz
    )`);
    await q.query('CREATE INDEX oauth_keys_use ON oauth_keys (use, active_from)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE oauth_keys');
    await q.query('DROP TABLE oauth_models');
  }
}
