import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 14, the connect flow (src/upstream-connect):
 * - `upstream_oauth_clients`: Gatehouse's dynamic client registration (RFC 7591) at an upstream's
 *   authorization server, one per (issuer, redirect URI), reused by every user and server behind
 *   that issuer. `client_secret_sealed` is sealed with the key ring (AAD: owner `*`, the issuer,
 *   `upstream-oauth:registered_client_secret`); `information` holds the rest of the registration
 *   response (never the secret).
 * - `upstream_oauth_flows`: authorization requests waiting for their callback, keyed by the
 *   SHA-256 of the `state` sent to the authorization server (any replica serves the callback),
 *   with the PKCE verifier sealed and the discovery result; single use, expiring.
 */
export class AddUpstreamConnectFlows1795401650000 implements MigrationInterface {
  name = 'AddUpstreamConnectFlows1795401650000';

  async up(q: QueryRunner): Promise<void> {
    await q.query(`CREATE TABLE upstream_oauth_clients (
      issuer text NOT NULL,
      redirect_uri text NOT NULL,
      client_id text NOT NULL,
      client_secret_sealed text,
      information jsonb NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (issuer, redirect_uri)
    )`);
    await q.query(`CREATE TABLE upstream_oauth_flows (
      state_hash bytea PRIMARY KEY,
      server text NOT NULL,
      owner text NOT NULL,
      scopes text[] NOT NULL DEFAULT '{}',
      code_verifier_sealed text,
      discovery jsonb,
      client jsonb,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL
    )`);
    await q.query('CREATE INDEX upstream_oauth_flows_expires_at ON upstream_oauth_flows (expires_at)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE upstream_oauth_flows');
    await q.query('DROP TABLE upstream_oauth_clients');
  }
}
