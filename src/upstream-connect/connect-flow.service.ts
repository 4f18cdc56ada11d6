import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import {
  auth,
  discoverAuthorizationServerMetadata,
  discoverOAuthProtectedResourceMetadata,
  discoverOAuthServerInfo,
  extractWWWAuthenticateParams,
  OAuthError,
  selectClientAuthMethod,
  type FetchLike,
  type OAuthDiscoveryState,
  type StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import { PinoLogger } from 'nestjs-pino';
import type { DataSource } from 'typeorm';
import { SafeFetchError } from '../common/http/safe-fetch.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { KEY_RING } from '../secrets/key-ring.provider.js';
import type { KeyRing } from '../secrets/secret-crypto.js';
import { SecretsService } from '../secrets/secrets.service.js';
import { openField, sealField } from '../upstream-oauth/token-sealing.js';
import { UpstreamConnectionsService, type ConnectionView } from '../upstream-oauth/upstream-connections.service.js';
import { UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { ConnectFlowProvider, type FlowClient, type FlowState } from './connect-flow.provider.js';
import { RegisteredClients } from './registered-clients.store.js';

/** Gatehouse's redirect URI at every upstream authorization server (path under PUBLIC_URL). */
export const CONNECT_CALLBACK_PATH = '/upstream-oauth/callback';
/** Gatehouse's Client ID Metadata Document (path under PUBLIC_URL). */
export const CLIENT_METADATA_PATH = '/upstream-oauth/client.json';

/**
 * Why a connect flow stopped, for the page: a stable `code` (shown as `data-error`), the HTTP
 * status, and a message for the person (names the server and the provider's error code and
 * description, never a token or secret).
 */
export class ConnectFailure extends Error {
  override name = 'ConnectFailure';
  constructor(
    readonly code: string,
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A server's discovery result, reused for DISCOVERY_TTL_MS: RFC 9728 + RFC 8414 metadata and the 401 challenge's scope. */
interface Discovered {
  state: OAuthDiscoveryState;
  resourceMetadataUrl: URL | undefined;
  challengeScope: string | undefined;
  at: number;
}

/** How long a server's discovery result is reused (ms). */
const DISCOVERY_TTL_MS = 10 * 60_000;
const SECRET_PLACEHOLDER = /^\$\{secret:([A-Za-z_][A-Za-z0-9_]*)\}$/;
const sha256 = (value: string) => createHash('sha256').update(value).digest();

interface FlowRow {
  server: string;
  owner: string;
  scopes: string[];
  code_verifier_sealed: string | null;
  discovery: OAuthDiscoveryState | null;
  client: FlowClient | null;
  expires_at: Date;
}

/** The authorization server's answer on the callback (RFC 6749 §4.1.2, RFC 9207 §2). */
export interface CallbackQuery {
  state?: unknown;
  code?: unknown;
  iss?: unknown;
  error?: unknown;
  error_description?: unknown;
}

/** One line of a provider's text, at most 200 characters. */
const line = (text: unknown) => (typeof text === 'string' ? text.replace(/[\r\n\t]+/g, ' ').slice(0, 200) : '');

/**
 * The browser connect flow (issue 14): how a Gatehouse user obtains their own token for an
 * upstream MCP server that needs OAuth, following the MCP authorization spec's client side
 * (2025-11-25, basic/authorization) with the SDK's `auth()` doing the protocol:
 *
 * 1. `start`: probe the upstream without a token — its 401 `WWW-Authenticate` names the RFC 9728
 *    metadata (`resource_metadata`) and the scope it wants — then `auth()`: protected-resource
 *    metadata → authorization server metadata (RFC 8414, else OIDC discovery; the issuer must
 *    echo), client registration (pre-registered, else Client ID Metadata Document, else RFC 7591,
 *    see {@link ConnectFlowProvider}), PKCE S256, `resource` (RFC 8707), `state`. The pending
 *    flow goes to `upstream_oauth_flows` (state hashed, verifier sealed) so any replica serves
 *    the callback; it expires after GATEHOUSE_UPSTREAM_CONNECT_FLOW_TTL.
 * 2. `finish`: the callback consumes the flow (single use), checks it belongs to the signed-in
 *    user, reports an authorization-server error as such, and has `auth()` check `iss`
 *    (RFC 9207, when advertised) and redeem the code; the tokens go to
 *    `UpstreamConnectionsService.save(…, 'flow')` with the binding a refresh and a revocation use.
 *
 * Fetches to URLs the admin configured (the upstream's origin, its `oauth.authorizationServer`)
 * use the normal client; every other URL (metadata and endpoints an upstream named) goes through
 * the SSRF-safe client (`UpstreamConnectionsService.fetcher`).
 */
@Injectable()
export class ConnectFlowService {
  private readonly discovered = new Map<string, Discovered>();
  private readonly redirectUrl: string;
  private readonly clientMetadataUrl: string | undefined;

  constructor(
    @InjectDataSource() private readonly dataSource: DataSource,
    @Inject(KEY_RING) private readonly ring: KeyRing,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly upstreams: UpstreamServersService,
    private readonly connections: UpstreamConnectionsService,
    private readonly secrets: SecretsService,
    private readonly registrations: RegisteredClients,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('UpstreamConnect');
    this.redirectUrl = `${config.http.publicUrl}${CONNECT_CALLBACK_PATH}`;
    // SEP-991: a client id URL must be https (the SDK refuses others); over http only registration remains.
    this.clientMetadataUrl = config.http.publicUrl.startsWith('https:') ? `${config.http.publicUrl}${CLIENT_METADATA_PATH}` : undefined;
  }

  /** Gatehouse's redirect URI (`PUBLIC_URL/upstream-oauth/callback`): what an admin registers at a provider. */
  get callbackUrl(): string {
    return this.redirectUrl;
  }

  /**
   * Gatehouse's Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document,
   * MCP 2025-11-25 "Client ID Metadata Documents"): `client_id` is the document's own URL; a
   * public client (`none`: the document cannot hold a secret). Undefined when PUBLIC_URL is not https.
   */
  clientMetadataDocument(): Record<string, unknown> | undefined {
    if (!this.clientMetadataUrl) return undefined;
    return {
      client_id: this.clientMetadataUrl,
      client_name: 'Gatehouse MCP gateway',
      client_uri: this.config.http.publicUrl,
      redirect_uris: [this.redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
      application_type: 'web',
    };
  }

  /**
   * Whether `server` can be connected in the browser: it exists on this replica, speaks HTTP and
   * has `oauth` mode `user`. The failure names what is wrong.
   * @throws ConnectFailure `unknown_server` (404), `not_oauth` (409)
   */
  connectable(server: string): { url: string; scopes: string[] } {
    const template = this.upstreams.template(server);
    if (!template) throw new ConnectFailure('unknown_server', 404, `There is no upstream server named "${server}".`);
    if (!template.oauth || template.oauth.mode !== 'user' || !template.url || template.transport === 'stdio') {
      throw new ConnectFailure('not_oauth', 409, `Server "${server}" does not use per-user OAuth, so there is no account to connect.`);
    }
    return { url: template.url, scopes: template.oauth.scopes ?? [] };
  }

  /**
   * Starts a flow for `owner` (the signed-in user's users.id) to `server`, asking for `scopes`
   * (a step-up's union; empty: the server's configured scopes, else what the upstream's
   * challenge or metadata names). Resolves with the authorization server's URL to send the browser to.
   * @throws ConnectFailure `not_oauth`, `unknown_server`, `discovery_failed` (502), `registration_failed` (502)
   */
  async start(server: string, owner: string, scopes: readonly string[] = []): Promise<URL> {
    const { url, scopes: configured } = this.connectable(server);
    const template = this.upstreams.template(server)!;
    const discovered = await this.discover(server);
    const wanted = [...new Set([...configured, ...scopes])];
    const scope = wanted.length > 0 ? wanted.join(' ') : discovered.challengeScope;
    const flow: FlowState = { state: randomBytes(32).toString('base64url'), discovery: discovered.state };
    const provider = await this.provider(server, flow);
    try {
      await auth(provider, { serverUrl: url, resourceMetadataUrl: discovered.resourceMetadataUrl, scope, fetchFn: this.fetchFor(url, template.oauth!.authorizationServer) });
    } catch (error) {
      this.discovered.clear();
      throw this.failure(server, error, 'discovery_failed', 'find or register with the authorization server of');
    }
    if (!provider.authorizationUrl || !flow.codeVerifier) throw new ConnectFailure('discovery_failed', 502, `Gatehouse could not build an authorization request for server "${server}".`);
    const expiresAt = new Date(Date.now() + this.config.upstreamConnect.flowTtlMs);
    await this.dataSource.query('DELETE FROM upstream_oauth_flows WHERE expires_at < now()');
    await this.dataSource.query(
      `INSERT INTO upstream_oauth_flows (state_hash, server, owner, scopes, code_verifier_sealed, discovery, client, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        sha256(flow.state),
        server,
        owner,
        scope ? scope.split(' ').filter(Boolean) : [],
        sealField(this.ring, owner, server, 'code_verifier', flow.codeVerifier),
        flow.discovery ? JSON.stringify(flow.discovery) : null,
        flow.client ? JSON.stringify(flow.client) : null,
        expiresAt,
      ],
    );
    this.logger.info({ server, owner, client: flow.client?.kind, issuer: flow.client?.issuer }, 'upstream OAuth connect flow started');
    return provider.authorizationUrl;
  }

  /**
   * The callback: consumes the flow named by `state`, checks it is `owner`'s (the signed-in
   * user), then redeems the code and stores the connection.
   * @returns the server and the stored connection's view
   * @throws ConnectFailure `unknown_state` (400: missing, tampered, used or expired),
   *   `other_user` (403: the flow was started by another Gatehouse user; nothing is connected),
   *   `access_denied` and other authorization-server error codes (400), `token_failed` (502),
   *   `issuer_mismatch` (400: RFC 9207)
   */
  async finish(query: CallbackQuery, owner: string): Promise<{ server: string; connection: ConnectionView }> {
    const state = typeof query.state === 'string' && query.state.length > 0 && query.state.length <= 200 ? query.state : undefined;
    if (!state) throw new ConnectFailure('unknown_state', 400, 'This answer from the authorization server carries no valid state; start again from your MCP client.');
    // TypeORM answers a DELETE … RETURNING on PostgreSQL as [rows, affected].
    const [rows] = await this.dataSource.query<[FlowRow[], number]>(
      'DELETE FROM upstream_oauth_flows WHERE state_hash = $1 RETURNING server, owner, scopes, code_verifier_sealed, discovery, client, expires_at',
      [sha256(state)],
    );
    const row = rows[0];
    if (!row || row.expires_at.getTime() <= Date.now()) {
      throw new ConnectFailure('unknown_state', 400, 'This connection attempt is unknown, was already used or has expired; start again from your MCP client.');
    }
    const server = row.server;
    if (row.owner !== owner) {
      this.logger.warn({ server, owner: row.owner, signedIn: owner }, 'upstream OAuth callback reached by another Gatehouse user; nothing connected');
      throw new ConnectFailure('other_user', 403, `This connection to server "${server}" was started by another Gatehouse user. Nothing was connected.`);
    }
    if (query.error !== undefined) {
      const code = typeof query.error === 'string' && /^[\x20-\x7e]{1,64}$/.test(query.error) ? query.error : 'invalid_response';
      const description = line(query.error_description);
      const what = code === 'access_denied' ? 'You (or the provider) declined the authorization' : 'The authorization server refused the request';
      throw new ConnectFailure(code, 400, `${what} for server "${server}" (${code}${description ? `: ${description}` : ''}). Nothing was connected.`);
    }
    if (typeof query.code !== 'string' || query.code.length === 0) throw new ConnectFailure('invalid_response', 400, `The authorization server sent no code for server "${server}". Nothing was connected.`);
    const { url } = this.connectable(server);
    const template = this.upstreams.template(server)!;
    const flow: FlowState = {
      state,
      codeVerifier: row.code_verifier_sealed ? openField(this.ring, owner, server, 'code_verifier', row.code_verifier_sealed) : undefined,
      discovery: row.discovery ?? undefined,
      client: row.client ?? undefined,
    };
    const provider = await this.provider(server, flow);
    const scope = row.scopes.length > 0 ? row.scopes.join(' ') : undefined;
    try {
      await auth(provider, { serverUrl: url, authorizationCode: query.code, iss: typeof query.iss === 'string' ? query.iss : undefined, scope, fetchFn: this.fetchFor(url, template.oauth!.authorizationServer) });
    } catch (error) {
      throw this.failure(server, error, 'token_failed', 'obtain a token from the authorization server of');
    }
    const tokens = provider.obtained;
    if (!tokens) throw new ConnectFailure('token_failed', 502, `The authorization server of server "${server}" returned no token.`);
    const connection = await this.connections.save(server, owner, this.tokensOf(tokens, scope), await this.bindingOf(provider, flow, tokens), 'flow');
    this.logger.info({ server, owner, client: flow.client?.kind }, 'upstream OAuth account connected in the browser');
    return { server, connection };
  }

  /** The SDK provider of one flow: the server's pre-registered client (secret resolved) or Gatehouse's own identity. */
  private async provider(server: string, flow: FlowState): Promise<ConnectFlowProvider> {
    const oauth = this.upstreams.template(server)!.oauth!;
    let preRegistered: { clientId: string; clientSecret?: string } | undefined;
    if (oauth.clientId) {
      let secret = oauth.clientSecret;
      const placeholder = secret ? SECRET_PLACEHOLDER.exec(secret) : null;
      if (placeholder) {
        secret = (await this.secrets.forCaller(server, null)).values.get(placeholder[1]);
        if (secret === undefined) throw new ConnectFailure('not_configured', 409, `Server "${server}" names its OAuth client secret as secret "${placeholder[1]}", which is not set; an administrator must set it.`);
      }
      preRegistered = { clientId: oauth.clientId, ...(secret ? { clientSecret: secret } : {}) };
    }
    return new ConnectFlowProvider(flow, { redirectUrl: this.redirectUrl, clientMetadataUrl: this.clientMetadataUrl, preRegistered, registrations: this.registrations });
  }

  /**
   * Discovery (MCP 2025-11-25 authorization, "Authorization Server Discovery"): an
   * unauthenticated request to the upstream, whose 401 `WWW-Authenticate` names the RFC 9728
   * metadata (`resource_metadata`) and the scope it wants; then the SDK's
   * `discoverOAuthServerInfo` (protected-resource metadata, else the well-known URLs; then RFC
   * 8414 / OIDC metadata with the issuer echo checked). `oauth.authorizationServer` (set by the
   * admin) replaces the authorization server the metadata names. Cached per server for 10 min.
   * @throws ConnectFailure `discovery_failed` (502)
   */
  async discover(server: string): Promise<Discovered> {
    const { url } = this.connectable(server);
    const authorizationServer = this.upstreams.template(server)!.oauth!.authorizationServer;
    // Keyed by what the admin configured too: a changed URL or authorization server is discovered afresh.
    const cacheKey = `${server}\n${url}\n${authorizationServer ?? ''}`;
    const cached = this.discovered.get(cacheKey);
    if (cached && Date.now() - cached.at < DISCOVERY_TTL_MS) return cached;
    let resourceMetadataUrl: URL | undefined;
    let challengeScope: string | undefined;
    try {
      const probe = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'gatehouse-discovery', version: '1' } } }),
        redirect: 'manual',
        signal: AbortSignal.timeout(this.config.upstreamOAuth.fetch.timeoutMs),
      });
      if (probe.status === 401 || probe.status === 403) ({ resourceMetadataUrl, scope: challengeScope } = extractWWWAuthenticateParams(probe));
      await probe.body?.cancel().catch(() => undefined);
    } catch (error) {
      this.logger.warn({ server, reason: line(error instanceof Error ? error.message : String(error)) }, 'upstream OAuth discovery probe failed; trying the well-known metadata');
    }
    const fetchFn = this.fetchFor(url, authorizationServer);
    let state: OAuthDiscoveryState;
    try {
      if (authorizationServer) {
        const metadata = await discoverAuthorizationServerMetadata(authorizationServer, { fetchFn });
        const resourceMetadata = await discoverOAuthProtectedResourceMetadata(url, { resourceMetadataUrl }, fetchFn).catch(() => undefined);
        state = { authorizationServerUrl: authorizationServer, authorizationServerMetadata: metadata, resourceMetadata, resourceMetadataUrl: resourceMetadataUrl?.href };
      } else {
        const info = await discoverOAuthServerInfo(url, { resourceMetadataUrl, fetchFn });
        state = { ...info, authorizationServerUrl: String(info.authorizationServerUrl), resourceMetadataUrl: resourceMetadataUrl?.href };
      }
    } catch (error) {
      throw this.failure(server, error, 'discovery_failed', 'find the authorization server of');
    }
    if (!state.authorizationServerMetadata) {
      throw new ConnectFailure('discovery_failed', 502, `Gatehouse found no authorization server metadata (RFC 8414 or OpenID Connect) for server "${server}" at ${state.authorizationServerUrl}; an administrator can set its oauth.authorizationServer.`);
    }
    const found: Discovered = { state, resourceMetadataUrl, challengeScope, at: Date.now() };
    if (this.discovered.size >= 1000) this.discovered.clear();
    this.discovered.set(cacheKey, found);
    return found;
  }

  /** The origin of `server`'s authorization endpoint (the connect form's `form-action` must allow it: the POST redirects there). */
  async authorizationOrigin(server: string): Promise<string> {
    const { state } = await this.discover(server);
    return new URL(state.authorizationServerMetadata!.authorization_endpoint).origin;
  }

  /**
   * The fetch `auth()` uses: the normal client for the origins the admin configured (the
   * upstream's, the configured authorization server's), the SSRF-safe one for the rest.
   */
  private fetchFor(serverUrl: string, authorizationServer: string | undefined): FetchLike {
    const trusted = new Set([new URL(serverUrl).origin, ...(authorizationServer ? [new URL(authorizationServer).origin] : [])]);
    const timeoutMs = this.config.upstreamOAuth.fetch.timeoutMs;
    const safe = this.connections.fetcher.fetch;
    return (input, init) => {
      const target = new URL(input);
      if (trusted.has(target.origin)) return fetch(target, { ...init, redirect: 'manual', signal: init?.signal ?? AbortSignal.timeout(timeoutMs) });
      return safe(target, init);
    };
  }

  private tokensOf(tokens: StoredOAuthTokens, requested: string | undefined) {
    const scope = tokens.scope ?? requested ?? '';
    return {
      accessToken: tokens.access_token,
      refreshToken: tokens.refresh_token ?? null,
      expiresAt: typeof tokens.expires_in === 'number' ? new Date(Date.now() + tokens.expires_in * 1000) : null,
      scopes: scope.split(' ').filter(Boolean),
      account: accountOf(tokens.id_token),
    };
  }

  /** What a refresh and a revocation need: the authorization server's endpoints and how Gatehouse authenticates there. */
  private async bindingOf(provider: ConnectFlowProvider, flow: FlowState, tokens: StoredOAuthTokens) {
    const metadata = flow.discovery?.authorizationServerMetadata;
    const issuer = metadata?.issuer ?? tokens.issuer ?? flow.client?.issuer ?? null;
    const info = (await provider.clientInformation(issuer ? { issuer } : undefined));
    return {
      issuer,
      tokenEndpoint: metadata?.token_endpoint ?? null,
      revocationEndpoint: (metadata as { revocation_endpoint?: string } | undefined)?.revocation_endpoint ?? null,
      clientId: info?.client_id ?? flow.client?.clientId ?? null,
      clientSecret: (info as { client_secret?: string } | undefined)?.client_secret ?? null,
      authMethod: info ? selectClientAuthMethod(info, metadata?.token_endpoint_auth_methods_supported ?? []) : null,
      resource: flow.resource ?? null,
    };
  }

  /** A thrown SDK / fetch error as a {@link ConnectFailure} naming the server and the provider's code (never a token). */
  private failure(server: string, error: unknown, code: string, what: string): ConnectFailure {
    if (error instanceof ConnectFailure) return error;
    const name = error instanceof Error ? error.name : '';
    // On the callback leg only: the answer's `iss`, or the flow's recorded issuer, differs (RFC 9207; SEP-2352).
    if (code === 'token_failed' && (name === 'AuthorizationServerMismatchError' || /\biss\b|issuer/i.test(error instanceof Error ? error.message : ''))) {
      this.logger.warn({ server, reason: line(error instanceof Error ? error.message : '') }, 'upstream OAuth callback refused: issuer mismatch');
      return new ConnectFailure('issuer_mismatch', 400, `The answer for server "${server}" did not come from the authorization server Gatehouse asked (RFC 9207 issuer check). Nothing was connected.`);
    }
    const detail = error instanceof OAuthError ? `${error.code}${error.message && error.message !== error.code ? `: ${line(error.message)}` : ''}` : error instanceof SafeFetchError ? line(error.message) : line(error instanceof Error ? error.message : String(error));
    this.logger.warn({ server, code, reason: detail }, 'upstream OAuth connect flow failed');
    return new ConnectFailure(code, 502, `Gatehouse could not ${what} server "${server}" (${detail}). Nothing was connected; try again later or ask an administrator.`);
  }
}

/** Who an OIDC ID token names (`email`, `preferred_username`, else `sub`), read without verification: shown to the user only. */
function accountOf(idToken: string | undefined): string | null {
  if (!idToken) return null;
  try {
    const claims = JSON.parse(Buffer.from(idToken.split('.')[1] ?? '', 'base64url').toString('utf8')) as Record<string, unknown>;
    const pick = [claims.email, claims.preferred_username, claims.sub].find((v): v is string => typeof v === 'string' && v.length > 0 && v.length <= 200);
    return pick ?? null;
  } catch {
    return null;
  }
}

