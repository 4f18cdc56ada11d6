import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import type { DataSource, EntityManager } from 'typeorm';
import type { Principal } from '../auth/principal.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { SafeFetch } from '../common/http/safe-fetch.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { ReplicatedCache } from '../database/replicated-cache.js';
import { KEY_RING } from '../secrets/key-ring.provider.js';
import type { KeyRing } from '../secrets/secret-crypto.js';
import { secretOwner } from '../secrets/secrets.service.js';
import { UPSTREAMS_CHANGED } from '../upstreams/upstream-registry.service.js';
import { UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { TokenExchangeService } from './token-exchange.service.js';
import { ProviderError, refreshTokens, revokeToken, type ProviderBinding } from './provider-client.js';
import { openField, sealField, SHARED_CONNECTION_OWNER, type SealedField } from './token-sealing.js';
import type { ConnectionSource, ConnectionStatus } from './upstream-oauth-connection.entity.js';
import { UPSTREAM_OAUTH_CHANGED } from './upstream-oauth.topics.js';

/** Tokens to store for a connection (what a token response or the stored-token API gives). */
export interface UpstreamTokens {
  accessToken: string;
  refreshToken?: string | null;
  /** When the access token expires; null/absent: unknown (used until the upstream refuses it). */
  expiresAt?: Date | null;
  /** Scopes granted (RFC 6749 §5.1 `scope`, split on spaces). */
  scopes?: string[];
  /** Who the tokens act as at the provider (`sub`, login, email), shown to the user. */
  account?: string | null;
}

/**
 * The authorization server the tokens come from: what a refresh and a revocation use. The flow
 * (connect page) fills it from discovery and registration; the stored-token API from the body.
 */
export interface AuthorizationServerBinding {
  issuer?: string | null;
  tokenEndpoint?: string | null;
  revocationEndpoint?: string | null;
  clientId?: string | null;
  clientSecret?: string | null;
  /** `client_secret_basic` | `client_secret_post` | `none`. */
  authMethod?: string | null;
  /** RFC 8707 resource the tokens are bound to. */
  resource?: string | null;
}

/** A connection as the API shows it: never a token or secret. */
export interface ConnectionView {
  server: string;
  /** True for the server's shared connection (set by an admin). */
  shared: boolean;
  account: string | null;
  scopes: string[];
  expiresAt: string | null;
  status: ConnectionStatus;
  statusReason: string | null;
  source: ConnectionSource;
  /** Whether Gatehouse can refresh it (a refresh token and a token endpoint are stored). */
  refreshable: boolean;
  issuer: string | null;
  updatedAt: string;
}

/** Why a caller must connect (or reconnect) their account; `scopes`: what to ask for. */
export type ConnectReason = 'not_connected' | 'needs_reauth' | 'insufficient_scope';

/** The machine-readable ask of a route problem (`Route.connect`): the connect flow turns it into the era's question. */
export interface ConnectRequest {
  server: string;
  reason: ConnectReason;
  scopes?: string[];
}

/** A usable token for one call, and whose it is. */
export interface UsableToken {
  token: string;
  /** The connection's owner (`*`: shared). */
  owner: string;
  shared: boolean;
  scopes: string[];
  /** ms since the epoch, or null. */
  expiresAt: number | null;
}

/** What {@link UpstreamConnectionsService.accessTokenFor} gives: a token, an ask to connect, or a failure to report. */
export type AccessTokenResult = UsableToken | { connect: ConnectRequest; problem: string } | { failure: string };

/** What a deletion did at the provider. */
export interface DeleteResult {
  /** `revoked`; `not_supported` (no revocation endpoint known); `failed` (the provider refused or was unreachable: removed anyway). */
  revocation: 'revoked' | 'not_supported' | 'failed';
  detail?: string;
}

/** A connection as cached per replica: the access token opened, the refresh token left sealed. */
interface Cached {
  owner: string;
  status: ConnectionStatus;
  accessToken: string;
  expiresAt: number | null;
  scopes: string[];
  refreshable: boolean;
  stepUpScopes: string[] | null;
}

interface Row {
  id: string;
  server: string;
  owner: string;
  account: string | null;
  scopes: string[];
  expires_at: Date | null;
  status: ConnectionStatus;
  status_reason: string | null;
  source: ConnectionSource;
  access_token_sealed: string;
  refresh_token_sealed: string | null;
  issuer: string | null;
  token_endpoint: string | null;
  revocation_endpoint: string | null;
  client_id: string | null;
  client_secret_sealed: string | null;
  token_endpoint_auth_method: string | null;
  resource: string | null;
  step_up_scopes: string[] | null;
  updated_at: Date;
}

const CACHE_MAX = 20_000;
const CACHE_TTL_MS = 10 * 60_000;
const key = (server: string, owner: string) => `${server}\n${owner}`;
const serverOf = (k: string) => k.slice(0, k.indexOf('\n'));

/**
 * The per-user (and shared) OAuth connections to upstream servers (issue 14): storage with
 * every token and client secret sealed by the key ring (AAD bound to owner, server and field),
 * the token a call uses (`accessTokenFor`: the caller's own, else the shared one), refresh
 * ahead of expiry under a per-(server, owner) row lock across replicas, `needs_reauth` when the
 * provider refuses a refresh, and revocation at deletion (RFC 7009).
 *
 * Steady state costs no database round-trip: opened access tokens are cached per replica
 * ({@link ReplicatedCache}, dropped on `upstream-oauth.changed`). Nothing here logs or returns a
 * token: views carry metadata only, problems name the server and the provider's error code.
 */
@Injectable()
export class UpstreamConnectionsService implements BeforeApplicationShutdown {
  private readonly cache: ReplicatedCache<string, Cached | null>;
  private readonly refreshing = new Map<string, Promise<AccessTokenResult>>();
  /** Requests to authorization servers a remote party (a user's stored binding, discovery) named. */
  readonly fetcher: SafeFetch;
  private readonly skewMs: number;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEY_RING) private readonly ring: KeyRing,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly upstreams: UpstreamServersService,
    private readonly bus: ChangeBusService,
    private readonly exchange: TokenExchangeService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('UpstreamOAuth');
    const f = config.upstreamOAuth.fetch;
    this.fetcher = new SafeFetch({ allowPrivate: f.allowPrivate, allowHttp: f.allowPrivate, maxBytes: f.maxBytes, timeoutMs: f.timeoutMs });
    this.skewMs = config.upstreamOAuth.refreshSkewMs;
    this.cache = new ReplicatedCache<string, Cached | null>(
      {
        name: 'upstream-oauth',
        max: CACHE_MAX,
        ttlMs: CACHE_TTL_MS,
        load: (k) => this.load(serverOf(k), k.slice(k.indexOf('\n') + 1)),
      },
      bus,
    )
      .invalidateOn(UPSTREAM_OAUTH_CHANGED, ({ server, owner }) => key(server, owner))
      .invalidateOn(UPSTREAMS_CHANGED, ({ name }) => ({ where: (k) => serverOf(k) === name }));
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.cache.dispose();
    await this.fetcher.close();
  }

  /** Whose connections a principal uses: its user id (else its principal id); null when unauthenticated. */
  ownerOf(principal: Principal): string | null {
    return secretOwner(principal);
  }

  /**
   * Stores (creates or replaces) the connection of `owner` (null: the server's shared one) to
   * `server`: what the connect flow's callback, the stored-token API and the admin API call.
   * Tokens and the client secret are sealed; the status becomes `active`. The step-up record is
   * kept, so asking for the same scopes again after reconnecting is recognized as a loop.
   * @throws AppError not_found for an unknown server, validation_failed for a server without `oauth`
   */
  async save(server: string, owner: string | null, tokens: UpstreamTokens, binding: AuthorizationServerBinding, source: ConnectionSource): Promise<ConnectionView> {
    const template = this.upstreams.template(server);
    if (!template) throw new AppError(ErrorCode.NotFound, `server "${server}" does not exist`);
    if (!template.oauth) throw new AppError(ErrorCode.ValidationFailed, `server: "${server}" is not configured for OAuth (its oauth field is empty)`, { details: { field: 'server' } });
    const who = owner ?? SHARED_CONNECTION_OWNER;
    const seal = (field: SealedField, value: string | null | undefined) => (value ? sealField(this.ring, who, server, field, value) : null);
    const rows = await this.dataSource.transaction(async (em) => {
      const saved = await em.query<Row[]>(
        `INSERT INTO upstream_oauth_connections (server, owner, account, scopes, expires_at, status, status_reason, source, access_token_sealed, refresh_token_sealed,
           issuer, token_endpoint, revocation_endpoint, client_id, client_secret_sealed, token_endpoint_auth_method, resource)
         VALUES ($1, $2, $3, $4, $5, 'active', NULL, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
         ON CONFLICT (server, owner) DO UPDATE SET account = EXCLUDED.account, scopes = EXCLUDED.scopes, expires_at = EXCLUDED.expires_at, status = 'active',
           status_reason = NULL, source = EXCLUDED.source, access_token_sealed = EXCLUDED.access_token_sealed, refresh_token_sealed = EXCLUDED.refresh_token_sealed,
           issuer = EXCLUDED.issuer, token_endpoint = EXCLUDED.token_endpoint, revocation_endpoint = EXCLUDED.revocation_endpoint, client_id = EXCLUDED.client_id,
           client_secret_sealed = EXCLUDED.client_secret_sealed, token_endpoint_auth_method = EXCLUDED.token_endpoint_auth_method, resource = EXCLUDED.resource,
           refreshed_at = NULL, updated_at = now()
         RETURNING *`,
        [
          server,
          who,
          tokens.account ?? null,
          tokens.scopes ?? [],
          tokens.expiresAt ?? null,
          source,
          seal('access_token', tokens.accessToken),
          seal('refresh_token', tokens.refreshToken),
          binding.issuer ?? null,
          binding.tokenEndpoint ?? null,
          binding.revocationEndpoint ?? null,
          binding.clientId ?? null,
          seal('client_secret', binding.clientSecret),
          binding.authMethod ?? null,
          binding.resource ?? null,
        ],
      );
      await this.bus.publish(UPSTREAM_OAUTH_CHANGED, { server, owner: who }, em);
      return saved;
    });
    this.cache.invalidate(key(server, who));
    this.logger.info({ server, owner: who === SHARED_CONNECTION_OWNER ? 'shared' : who, source }, 'upstream OAuth connection stored');
    return this.view(rows[0]);
  }

  /** `owner`'s own connections (server, account, scopes, expiry, status; never tokens), and the shared connections of servers they have none for. */
  async list(owner: string): Promise<ConnectionView[]> {
    const rows = await this.dataSource.query<Row[]>(
      `SELECT * FROM upstream_oauth_connections c WHERE c.owner = $1
         OR (c.owner = $2 AND NOT EXISTS (SELECT 1 FROM upstream_oauth_connections o WHERE o.server = c.server AND o.owner = $1))
       ORDER BY c.server`,
      [owner, SHARED_CONNECTION_OWNER],
    );
    return rows.map((r) => this.view(r));
  }

  /** One connection's view (`owner` null: the shared one), or undefined. */
  async get(server: string, owner: string | null): Promise<ConnectionView | undefined> {
    const row = await this.row(server, owner ?? SHARED_CONNECTION_OWNER);
    return row ? this.view(row) : undefined;
  }

  /**
   * Deletes `owner`'s connection (null: the shared one) to `server`, revoking its refresh token
   * (else its access token) at the provider first when a revocation endpoint is known (RFC
   * 7009). A provider that refuses or cannot be reached does not keep the connection: it is
   * removed anyway and the result says so.
   * @throws AppError not_found when there is no such connection
   */
  async delete(server: string, owner: string | null): Promise<DeleteResult> {
    const who = owner ?? SHARED_CONNECTION_OWNER;
    const row = await this.row(server, who);
    if (!row) throw new AppError(ErrorCode.NotFound, `no ${who === SHARED_CONNECTION_OWNER ? 'shared ' : ''}OAuth connection to server "${server}"`);
    let result: DeleteResult = { revocation: 'not_supported' };
    const binding = this.binding(row);
    if (binding?.revocationEndpoint) {
      try {
        const refresh = row.refresh_token_sealed ? this.open(row, 'refresh_token', row.refresh_token_sealed) : null;
        await revokeToken(binding, refresh ?? this.open(row, 'access_token', row.access_token_sealed), refresh ? 'refresh_token' : 'access_token', this.fetcher.fetch);
        result = { revocation: 'revoked' };
      } catch (error) {
        result = { revocation: 'failed', detail: error instanceof Error ? error.message : String(error) };
      }
    }
    await this.dataSource.transaction(async (em) => {
      await em.query('DELETE FROM upstream_oauth_connections WHERE server = $1 AND owner = $2', [server, who]);
      await this.bus.publish(UPSTREAM_OAUTH_CHANGED, { server, owner: who }, em);
    });
    this.cache.invalidate(key(server, who));
    this.logger.info({ server, owner: who === SHARED_CONNECTION_OWNER ? 'shared' : who, revocation: result.revocation }, 'upstream OAuth connection deleted');
    return result;
  }

  /**
   * The access token a call from `principal` to `server` (a server with `oauth`, mode `user`)
   * sends: the caller's own connection, else the server's shared one; refreshed first when it
   * expires within GATEHOUSE_UPSTREAM_OAUTH_REFRESH_SKEW (one refresh per connection across
   * replicas; concurrent callers get its result). `{ connect }` when the caller must connect
   * (none, `needs_reauth`, expired without a refresh token); `{ failure }` when a refresh failed
   * transiently (the connection stays active).
   */
  async accessTokenFor(server: string, principal: Principal): Promise<AccessTokenResult> {
    const owner = this.ownerOf(principal);
    const oauth = this.upstreams.template(server)?.oauth;
    if (oauth?.mode === 'token_exchange') return this.exchange.tokenFor(server, owner, principal, oauth);
    if (owner === null) return { connect: { server, reason: 'not_connected' }, problem: `Server "${server}" needs an OAuth connection; sign in to Gatehouse (send credentials), then ${this.howToConnect(server)}` };
    const own = await this.cache.get(key(server, owner));
    if (own) return this.usable(server, own, false);
    const shared = await this.cache.get(key(server, SHARED_CONNECTION_OWNER));
    if (shared && shared.status === 'active') return this.usable(server, shared, true);
    return { connect: { server, reason: 'not_connected' }, problem: `You have not connected your account for server "${server}": ${this.howToConnect(server)}` };
  }

  /**
   * The upstream refused `rejected` with 401 (RFC 6750 `invalid_token`) although it looked
   * valid: refresh once (unless another call already replaced it) and return the new token;
   * without a refresh token, or when the provider refuses the refresh, the connection becomes
   * `needs_reauth` and the result asks to connect.
   */
  async rejected(server: string, token: UsableToken, principal?: Principal): Promise<AccessTokenResult> {
    const oauth = this.upstreams.template(server)?.oauth;
    if (oauth?.mode === 'token_exchange') {
      // An exchanged token: exchange the caller's token again.
      this.exchange.forget(token);
      return principal ? this.exchange.tokenFor(server, token.owner, principal, oauth) : { failure: `Upstream MCP server "${server}" refused the exchanged token` };
    }
    return this.refresh(server, token.owner, token.token);
  }

  /**
   * Marks `owner`'s connection `needs_reauth` with `reason` (the provider's error code, never a
   * token); the next call asks the user to connect again. No-op when there is none.
   */
  async markNeedsReauth(server: string, owner: string, reason: string): Promise<void> {
    if (this.upstreams.template(server)?.oauth?.mode === 'token_exchange') return; // nothing stored to mark
    await this.dataSource.transaction(async (em) => this.setNeedsReauth(em, server, owner, reason));
    this.cache.invalidate(key(server, owner));
  }

  /**
   * Step-up after an upstream 403 `insufficient_scope` (MCP 2025-11-25 authorization, "Scope
   * Challenge Handling"): the union of what the connection holds and what the upstream asks.
   * The same union asked twice (the user reconnected and the upstream still refuses) is not
   * asked again: `{ failure }` names the scopes instead of looping.
   */
  async stepUp(server: string, token: UsableToken, required: string[]): Promise<AccessTokenResult> {
    const union = [...new Set([...token.scopes, ...required])].sort();
    if (this.upstreams.template(server)?.oauth?.mode === 'token_exchange') {
      return { failure: `Server "${server}" needs scopes the exchanged token lacks (${union.join(' ')}); an administrator must set oauth.tokenExchange.scope` };
    }
    const asked = await this.dataSource.transaction(async (em) => {
      const rows = await em.query<{ step_up_scopes: string[] | null }[]>('SELECT step_up_scopes FROM upstream_oauth_connections WHERE server = $1 AND owner = $2 FOR UPDATE', [server, token.owner]);
      const before = rows[0]?.step_up_scopes ?? null;
      if (before && before.length === union.length && [...before].sort().every((s, i) => s === union[i])) return false;
      await em.query('UPDATE upstream_oauth_connections SET step_up_scopes = $3 WHERE server = $1 AND owner = $2', [server, token.owner, union]);
      return true;
    });
    if (!asked) return { failure: `Server "${server}" still refuses the call for want of scopes after you granted ${union.join(' ')}; the provider did not grant what the server needs, ask an administrator` };
    const whose = token.shared ? 'the shared connection' : 'your connection';
    return {
      connect: { server, reason: 'insufficient_scope', scopes: union },
      problem: `Server "${server}" needs more access than ${whose} grants (scopes: ${union.join(' ')}): ${this.howToConnect(server)}`,
    };
  }

  /** How a caller connects their account: the connect page, or the stored-token API. */
  howToConnect(server: string): string {
    const base = this.config.http.publicUrl;
    return `connect your account at ${base}/connect/${server} (or store a token with PUT ${base}/api/v1/me/connections/${server})`;
  }

  private async usable(server: string, c: Cached, shared: boolean): Promise<AccessTokenResult> {
    if (c.status === 'needs_reauth') {
      return { connect: { server, reason: 'needs_reauth' }, problem: `Your connection to server "${server}" must be renewed: ${this.howToConnect(server)}` };
    }
    if (c.expiresAt !== null && c.expiresAt - this.skewMs <= Date.now()) {
      if (c.refreshable) return this.refresh(server, c.owner);
      if (c.expiresAt <= Date.now()) {
        const whose = shared ? 'The shared connection' : 'Your connection';
        return { connect: { server, reason: 'needs_reauth' }, problem: `${whose} to server "${server}" has expired and cannot be refreshed: ${this.howToConnect(server)}` };
      }
    }
    return { token: c.accessToken, owner: c.owner, shared, scopes: c.scopes, expiresAt: c.expiresAt };
  }

  /**
   * Refreshes `owner`'s connection once per replica at a time (single-flight) and once across
   * replicas (`SELECT … FOR UPDATE` on its row: a replica that waited finds it refreshed and
   * uses that). `rejected`: the token the upstream refused (refresh even if not expiring,
   * unless the stored token has already changed).
   */
  private refresh(server: string, owner: string, rejected?: string): Promise<AccessTokenResult> {
    const k = key(server, owner);
    let running = this.refreshing.get(k);
    if (!running) {
      running = this.refreshLocked(server, owner, rejected).finally(() => {
        this.refreshing.delete(k);
        this.cache.invalidate(k);
      });
      this.refreshing.set(k, running);
    }
    return running;
  }

  private async refreshLocked(server: string, owner: string, rejected: string | undefined): Promise<AccessTokenResult> {
    const shared = owner === SHARED_CONNECTION_OWNER;
    return this.dataSource.transaction(async (em) => {
      const rows = await em.query<Row[]>('SELECT * FROM upstream_oauth_connections WHERE server = $1 AND owner = $2 FOR UPDATE', [server, owner]);
      const row = rows[0];
      if (!row) return { connect: { server, reason: 'not_connected' as const }, problem: `You have not connected your account for server "${server}": ${this.howToConnect(server)}` };
      if (row.status === 'needs_reauth') return { connect: { server, reason: 'needs_reauth' as const }, problem: `Your connection to server "${server}" must be renewed: ${this.howToConnect(server)}` };
      const current = this.open(row, 'access_token', row.access_token_sealed);
      const expiresAt = row.expires_at?.getTime() ?? null;
      const fresh = rejected === undefined ? expiresAt === null || expiresAt - this.skewMs > Date.now() : current !== rejected;
      if (fresh) return { token: current, owner, shared, scopes: row.scopes, expiresAt };
      const binding = this.binding(row);
      if (!row.refresh_token_sealed || !binding) {
        const reason = rejected === undefined ? 'the access token expired and no refresh token is stored' : 'the upstream refused the access token and no refresh token is stored';
        await this.setNeedsReauth(em, server, owner, reason);
        return { connect: { server, reason: 'needs_reauth' as const }, problem: `Your connection to server "${server}" must be renewed (${reason}): ${this.howToConnect(server)}` };
      }
      const refreshToken = this.open(row, 'refresh_token', row.refresh_token_sealed);
      let tokens;
      try {
        tokens = await refreshTokens(binding, refreshToken, this.fetcher.fetch);
      } catch (error) {
        const e = error instanceof ProviderError ? error : new ProviderError(String(error), false, undefined);
        if (e.permanent) {
          await this.setNeedsReauth(em, server, owner, e.message);
          this.logger.warn({ server, owner: shared ? 'shared' : owner, code: e.code }, 'upstream OAuth refresh refused: the connection needs re-authorization');
          return { connect: { server, reason: 'needs_reauth' as const }, problem: `Your connection to server "${server}" must be renewed (${e.message}): ${this.howToConnect(server)}` };
        }
        this.logger.warn({ server, owner: shared ? 'shared' : owner, code: e.code, reason: e.message }, 'upstream OAuth refresh failed; will retry on the next call');
        return { failure: `Upstream MCP server "${server}": ${e.message}; try again` };
      }
      const scopes = tokens.scope ? tokens.scope.split(' ').filter(Boolean) : row.scopes;
      const newExpiry = typeof tokens.expires_in === 'number' ? new Date(Date.now() + tokens.expires_in * 1000) : null;
      await em.query(
        `UPDATE upstream_oauth_connections SET access_token_sealed = $3, refresh_token_sealed = $4, expires_at = $5, scopes = $6, refreshed_at = now(), updated_at = now()
         WHERE server = $1 AND owner = $2`,
        [
          server,
          owner,
          sealField(this.ring, owner, server, 'access_token', tokens.access_token),
          sealField(this.ring, owner, server, 'refresh_token', tokens.refresh_token ?? refreshToken),
          newExpiry,
          scopes,
        ],
      );
      await this.bus.publish(UPSTREAM_OAUTH_CHANGED, { server, owner }, em);
      this.logger.info({ server, owner: shared ? 'shared' : owner }, 'upstream OAuth token refreshed');
      return { token: tokens.access_token, owner, shared, scopes, expiresAt: newExpiry?.getTime() ?? null };
    });
  }

  private async setNeedsReauth(em: EntityManager, server: string, owner: string, reason: string): Promise<void> {
    await em.query(`UPDATE upstream_oauth_connections SET status = 'needs_reauth', status_reason = $3, updated_at = now() WHERE server = $1 AND owner = $2`, [server, owner, reason.slice(0, 500)]);
    await this.bus.publish(UPSTREAM_OAUTH_CHANGED, { server, owner }, em);
  }

  private async row(server: string, owner: string): Promise<Row | undefined> {
    const rows = await this.dataSource.query<Row[]>('SELECT * FROM upstream_oauth_connections WHERE server = $1 AND owner = $2', [server, owner]);
    return rows[0];
  }

  /** Cache loader: the row opened (access token only), or null when there is none or it cannot be opened (logged by field, never by value). */
  private async load(server: string, owner: string): Promise<Cached | null> {
    const row = await this.row(server, owner);
    if (!row) return null;
    try {
      return {
        owner,
        status: row.status,
        accessToken: this.open(row, 'access_token', row.access_token_sealed),
        expiresAt: row.expires_at?.getTime() ?? null,
        scopes: row.scopes,
        refreshable: row.refresh_token_sealed !== null && row.token_endpoint !== null && row.client_id !== null,
        stepUpScopes: row.step_up_scopes,
      };
    } catch (error) {
      this.logger.error({ server, owner: owner === SHARED_CONNECTION_OWNER ? 'shared' : owner, err: error }, 'an upstream OAuth connection cannot be decrypted; treated as needing re-authorization');
      return { owner, status: 'needs_reauth', accessToken: '', expiresAt: null, scopes: [], refreshable: false, stepUpScopes: null };
    }
  }

  private open(row: Row, field: SealedField, sealed: string): string {
    return openField(this.ring, row.owner, row.server, field, sealed);
  }

  private binding(row: Row): ProviderBinding | undefined {
    if (!row.token_endpoint || !row.client_id) return undefined;
    return {
      issuer: row.issuer,
      tokenEndpoint: row.token_endpoint,
      revocationEndpoint: row.revocation_endpoint,
      clientId: row.client_id,
      clientSecret: row.client_secret_sealed ? this.open(row, 'client_secret', row.client_secret_sealed) : null,
      authMethod: row.token_endpoint_auth_method,
      resource: row.resource,
    };
  }

  private view(row: Row): ConnectionView {
    return {
      server: row.server,
      shared: row.owner === SHARED_CONNECTION_OWNER,
      account: row.account,
      scopes: row.scopes,
      expiresAt: row.expires_at ? new Date(row.expires_at).toISOString() : null,
      status: row.status,
      statusReason: row.status_reason,
      source: row.source,
      refreshable: row.refresh_token_sealed !== null && row.token_endpoint !== null && row.client_id !== null,
      issuer: row.issuer,
      updatedAt: new Date(row.updated_at).toISOString(),
    };
  }
}
