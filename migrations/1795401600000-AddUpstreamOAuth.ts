import type { MigrationInterface, QueryRunner } from 'typeorm';

/**
 * Issue 14, per-user upstream OAuth (src/upstream-oauth):
 * - `upstream_servers.oauth` (jsonb, NULL: none): how Gatehouse authorizes to an HTTP upstream
 *   that needs OAuth — `{ mode: 'user' | 'token_exchange', scopes, clientId, clientSecret,
 *   authorizationServer, tokenExchange }` (docs/upstream-oauth.md).
 * - `upstream_oauth_connections`: one OAuth connection per (server, owner) — `owner` is the user
 *   id (or the principal id of an ownerless principal), `*` for the server's shared connection
 *   an admin set. Tokens and the client secret are sealed with the key ring (AES-256-GCM, the
 *   additional data binds each to owner, server and field); the text columns `*_sealed` hold
 *   `keyId.nonce.ciphertext` (base64url). The authorization-server binding (issuer, token and
 *   revocation endpoints, client id, auth method, resource) is what a refresh or revocation uses.
 *   `server_url`: the server's URL when the tokens were stored; a server re-created or re-pointed
 *   under the same name never receives tokens stored for another URL.
 */
export class AddUpstreamOAuth1795401600000 implements MigrationInterface {
  name = 'AddUpstreamOAuth1795401600000';

  async up(q: QueryRunner): Promise<void> {
    await q.query('ALTER TABLE upstream_servers ADD COLUMN oauth jsonb');
    await q.query(`CREATE TABLE upstream_oauth_connections (
      id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
      server text NOT NULL,
      owner text NOT NULL,
      server_url text NOT NULL,
      account text,
      scopes text[] NOT NULL DEFAULT '{}',
      expires_at timestamptz,
      status text NOT NULL DEFAULT 'active',
      status_reason text,
      source text NOT NULL,
      access_token_sealed text NOT NULL,
      refresh_token_sealed text,
      issuer text,
      token_endpoint text,
      revocation_endpoint text,
      client_id text,
      client_secret_sealed text,
      token_endpoint_auth_method text,
      resource text,
      step_up_scopes text[],
      refreshed_at timestamptz,
      created_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now(),
      CONSTRAINT upstream_oauth_connections_status_check CHECK (status IN ('active', 'needs_reauth')),
      CONSTRAINT upstream_oauth_connections_source_check CHECK (source IN ('api', 'admin', 'flow'))
    )`);
    await q.query('CREATE UNIQUE INDEX upstream_oauth_connections_server_owner_key ON upstream_oauth_connections (server, owner)');
    await q.query('CREATE INDEX upstream_oauth_connections_owner ON upstream_oauth_connections (owner)');
  }

  async down(q: QueryRunner): Promise<void> {
    await q.query('DROP TABLE upstream_oauth_connections');
    await q.query('ALTER TABLE upstream_servers DROP COLUMN oauth');
  }
}
