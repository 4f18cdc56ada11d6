import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 13, sign-in (src/login):
 * - `browser_sessions`: a person signed in in one browser. The cookie holds 256 random bits;
 *   only their SHA-256 is stored (`token_hash`), so a copy of the table signs nobody in.
 * - `login_flows`: a sign-in started at an identity provider (state, nonce, PKCE verifier,
 *   return path), so whichever replica receives the callback can finish it. Bound to the
 *   starting browser by `binding_hash` (SHA-256 of a cookie), consumed once.
 * - `local_credentials`: Gatehouse passwords (scrypt; algorithm parameters stored per row).
 * - `login_identities`: each way a person signed in (IdP `iss` + `sub`, or a local username),
 *   pointing at their one `users` row; a second IdP links to that row only through an email
 *   that both sides verified (`email_verified`).
 * - `login_throttle`: rate-limiter-flexible's table for failed password attempts, shared by
 *   every replica (the library's own layout: key, points, expire).
 */
export class AddBrowserLogin1795401300000 implements MigrationInterface {
  name = 'AddBrowserLogin1795401300000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE browser_sessions (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      token_hash bytea NOT NULL,
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      idp text NOT NULL,
      amr text[] NOT NULL DEFAULT '{}',
      auth_time timestamptz NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_seen_at timestamptz NOT NULL,
      expires_at timestamptz NOT NULL,
      revoked_at timestamptz
    )`);
    await q.query('CREATE UNIQUE INDEX browser_sessions_token_hash_key ON browser_sessions (token_hash)');
    await q.query('CREATE INDEX browser_sessions_user_id ON browser_sessions (user_id)');
    await q.query('CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at)');
    await q.query(`CREATE TABLE login_flows (
      state text PRIMARY KEY,
      binding_hash bytea NOT NULL,
      provider text NOT NULL,
      nonce text,
      code_verifier text NOT NULL,
      return_to text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    )`);
    await q.query('CREATE INDEX login_flows_expires_at ON login_flows (expires_at)');
    await q.query(`CREATE TABLE local_credentials (
      user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
      username text NOT NULL,
      algorithm text NOT NULL,
      params jsonb NOT NULL,
      salt bytea NOT NULL,
      hash bytea NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`);
    await q.query('CREATE UNIQUE INDEX local_credentials_username_key ON local_credentials (username)');
    await q.query(`CREATE TABLE login_identities (
      issuer text NOT NULL,
      subject text NOT NULL,
      user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
      provider text NOT NULL,
      email text,
      email_verified boolean NOT NULL DEFAULT false,
      created_at timestamptz NOT NULL DEFAULT now(),
      last_login_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (issuer, subject)
    )`);
    await q.query('CREATE INDEX login_identities_user_id ON login_identities (user_id)');
    await q.query('CREATE INDEX login_identities_verified_email ON login_identities (lower(email)) WHERE email_verified');
    await q.query(`CREATE TABLE login_throttle (
      key varchar(255) PRIMARY KEY,
      points integer NOT NULL DEFAULT 0,
      expire bigint
    )`);
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE login_throttle');
    await q.query('DROP TABLE login_identities');
    await q.query('DROP TABLE local_credentials');
    await q.query('DROP TABLE login_flows');
    await q.query('DROP TABLE browser_sessions');
  }
}
