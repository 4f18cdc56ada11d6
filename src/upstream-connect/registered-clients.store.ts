import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { OAuthClientInformationMixed } from '@modelcontextprotocol/client';
import type { DataSource } from 'typeorm';
import { KEY_RING } from '../secrets/key-ring.provider.js';
import type { KeyRing } from '../secrets/secret-crypto.js';
import { openField, sealField, SHARED_CONNECTION_OWNER } from '../upstream-oauth/token-sealing.js';

interface Row {
  client_id: string;
  client_secret_sealed: string | null;
  information: Record<string, unknown>;
}

/**
 * Gatehouse's dynamic client registrations (RFC 7591) at upstream authorization servers, one
 * per (issuer, redirect URI) in `upstream_oauth_clients`: registered once, then used for every
 * user and every server that authorization server protects. The client secret is sealed with
 * the key ring (owner `*`, the issuer, `upstream-oauth:registered_client_secret`); the rest of
 * the registration response is kept as it came (`client_id_issued_at`, `client_secret_expires_at`,
 * the registered metadata).
 */
@Injectable()
export class RegisteredClients {
  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEY_RING) private readonly ring: KeyRing,
  ) {}

  /**
   * The registration for (issuer, redirectUri), or undefined: none, or its secret has expired
   * (RFC 7591 §3.2.1 `client_secret_expires_at`, seconds; 0 = never) or cannot be opened — a new
   * registration replaces it then.
   */
  async get(issuer: string, redirectUri: string): Promise<OAuthClientInformationMixed | undefined> {
    const [row] = await this.dataSource.query<Row[]>('SELECT client_id, client_secret_sealed, information FROM upstream_oauth_clients WHERE issuer = $1 AND redirect_uri = $2', [issuer, redirectUri]);
    if (!row) return undefined;
    const expires = Number(row.information.client_secret_expires_at ?? 0);
    if (row.client_secret_sealed && expires > 0 && expires * 1000 <= Date.now()) return undefined;
    let secret: string | undefined;
    try {
      secret = row.client_secret_sealed ? openField(this.ring, SHARED_CONNECTION_OWNER, issuer, 'registered_client_secret', row.client_secret_sealed) : undefined;
    } catch {
      return undefined;
    }
    return { ...row.information, client_id: row.client_id, ...(secret ? { client_secret: secret } : {}) };
  }

  /** Stores (or replaces) the registration for (issuer, redirectUri). */
  async save(issuer: string, redirectUri: string, information: OAuthClientInformationMixed): Promise<void> {
    const { client_secret: secret, client_id: clientId, ...rest } = information;
    const sealed = secret ? sealField(this.ring, SHARED_CONNECTION_OWNER, issuer, 'registered_client_secret', secret) : null;
    await this.dataSource.query(
      `INSERT INTO upstream_oauth_clients (issuer, redirect_uri, client_id, client_secret_sealed, information) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (issuer, redirect_uri) DO UPDATE SET client_id = EXCLUDED.client_id, client_secret_sealed = EXCLUDED.client_secret_sealed, information = EXCLUDED.information, created_at = now()`,
      [issuer, redirectUri, clientId, sealed, JSON.stringify(rest)],
    );
  }

  /** Forgets the registration (the authorization server answered `invalid_client`): the next flow registers again. */
  async forget(issuer: string, redirectUri: string): Promise<void> {
    await this.dataSource.query('DELETE FROM upstream_oauth_clients WHERE issuer = $1 AND redirect_uri = $2', [issuer, redirectUri]);
  }
}
