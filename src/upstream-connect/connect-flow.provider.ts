import type {
  OAuthClientInformationContext,
  OAuthClientMetadata,
  OAuthClientProvider,
  OAuthDiscoveryState,
  StoredOAuthClientInformation,
  StoredOAuthTokens,
} from '@modelcontextprotocol/client';
import type { RegisteredClients } from './registered-clients.store.js';

/**
 * How Gatehouse identified itself to the authorization server in one flow, in the MCP
 * authorization spec's order of preference ("Client Registration Approaches", 2025-11-25):
 * `pre_registered` (the server's `oauth.clientId`/`clientSecret`), `metadata_document`
 * (Gatehouse's Client ID Metadata Document URL as `client_id`), `dynamic` (RFC 7591, kept per issuer).
 */
export type ClientKind = 'pre_registered' | 'metadata_document' | 'dynamic';

/** What a flow remembers of its client between the redirect and the callback (never a secret). */
export interface FlowClient {
  kind: ClientKind;
  clientId: string;
  issuer: string;
}

/** The part of a pending flow the SDK's `auth()` reads and writes across the redirect. */
export interface FlowState {
  /** The `state` sent to the authorization server (random, 256 bits). */
  state: string;
  codeVerifier?: string;
  discovery?: OAuthDiscoveryState;
  client?: FlowClient;
  resource?: string;
}

/** What the provider needs besides the flow: Gatehouse's client identity and where registrations are kept. */
export interface ProviderSettings {
  /** `PUBLIC_URL/upstream-oauth/callback`. */
  redirectUrl: string;
  /** `PUBLIC_URL/upstream-oauth/client.json` when PUBLIC_URL is https (the SDK accepts only https client ids). */
  clientMetadataUrl?: string;
  /** The server's pre-registered client (secret resolved), if any. */
  preRegistered?: { clientId: string; clientSecret?: string };
  registrations: RegisteredClients;
}

/** Gatehouse's client metadata (RFC 7591 §2) as registered dynamically: a confidential web client. */
export function gatehouseClientMetadata(redirectUrl: string): OAuthClientMetadata {
  return {
    client_name: 'Gatehouse MCP gateway',
    redirect_uris: [redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    application_type: 'web',
  };
}

/**
 * The SDK's {@link OAuthClientProvider} for one connect flow of one (user, upstream server):
 * `auth()` (SDK v2) does discovery (RFC 9728, RFC 8414 / OIDC with the issuer check), client
 * registration, PKCE S256, `resource` (RFC 8707), the RFC 9207 `iss` check and the token
 * request; this provider only keeps what `auth()` hands it — in {@link FlowState}, which the
 * flow service persists in PostgreSQL between the redirect and the callback — and answers
 * what it asks:
 *
 * - client information: the pre-registered client, else the dynamic registration stored for
 *   the issuer ({@link RegisteredClients}), else — when the flow chose it — the metadata
 *   document URL; `auth()` picks the metadata document only when the authorization server
 *   advertises `client_id_metadata_document_supported` and {@link clientMetadataUrl} is set,
 *   and registers dynamically otherwise.
 * - tokens: none. A flow always asks for a new authorization (stored connections are refreshed
 *   by UpstreamConnectionsService, not here); the tokens `auth()` obtains are {@link obtained}.
 * - the authorization URL `auth()` would redirect to is {@link authorizationUrl}.
 */
export class ConnectFlowProvider implements OAuthClientProvider {
  /** The authorization request's URL, once `auth()` has built it. */
  authorizationUrl: URL | undefined;
  /** The token response of the callback leg. */
  obtained: StoredOAuthTokens | undefined;

  constructor(
    readonly flow: FlowState,
    private readonly settings: ProviderSettings,
  ) {}

  get redirectUrl(): string {
    return this.settings.redirectUrl;
  }

  get clientMetadataUrl(): string | undefined {
    return this.settings.preRegistered ? undefined : this.settings.clientMetadataUrl;
  }

  get clientMetadata(): OAuthClientMetadata {
    return gatehouseClientMetadata(this.settings.redirectUrl);
  }

  state(): string {
    return this.flow.state;
  }

  async clientInformation(ctx?: OAuthClientInformationContext): Promise<StoredOAuthClientInformation | undefined> {
    const pre = this.settings.preRegistered;
    const issuer = ctx?.issuer ?? this.flow.client?.issuer;
    if (pre) {
      if (issuer) this.flow.client = { kind: 'pre_registered', clientId: pre.clientId, issuer };
      return { client_id: pre.clientId, ...(pre.clientSecret ? { client_secret: pre.clientSecret } : {}), ...(issuer ? { issuer } : {}) };
    }
    if (!issuer) return undefined;
    if (this.flow.client?.kind === 'metadata_document' && this.flow.client.issuer === issuer) return { client_id: this.flow.client.clientId, issuer };
    const registered = await this.settings.registrations.get(issuer, this.settings.redirectUrl);
    if (!registered) return undefined;
    this.flow.client = { kind: 'dynamic', clientId: registered.client_id, issuer };
    return { ...registered, issuer };
  }

  async saveClientInformation(information: StoredOAuthClientInformation, ctx?: OAuthClientInformationContext): Promise<void> {
    const issuer = ctx?.issuer ?? information.issuer ?? '';
    const pre = this.settings.preRegistered;
    if (pre) {
      this.flow.client = { kind: 'pre_registered', clientId: pre.clientId, issuer };
      return;
    }
    if (information.client_id === this.settings.clientMetadataUrl) {
      this.flow.client = { kind: 'metadata_document', clientId: information.client_id, issuer };
      return;
    }
    const { issuer: _stamp, ...registration } = information;
    await this.settings.registrations.save(issuer, this.settings.redirectUrl, registration);
    this.flow.client = { kind: 'dynamic', clientId: information.client_id, issuer };
  }

  tokens(): StoredOAuthTokens | undefined {
    return undefined;
  }

  saveTokens(tokens: StoredOAuthTokens): void {
    this.obtained = tokens;
  }

  redirectToAuthorization(authorizationUrl: URL): void {
    this.authorizationUrl = authorizationUrl;
  }

  saveCodeVerifier(codeVerifier: string): void {
    this.flow.codeVerifier = codeVerifier;
  }

  codeVerifier(): string {
    if (!this.flow.codeVerifier) throw new Error('the PKCE code verifier of this flow is missing');
    return this.flow.codeVerifier;
  }

  saveDiscoveryState(state: OAuthDiscoveryState): void {
    this.flow.discovery = state;
  }

  discoveryState(): OAuthDiscoveryState | undefined {
    return this.flow.discovery;
  }

  saveResourceUrl(resourceUrl: string): void {
    this.flow.resource = resourceUrl;
  }

  resourceUrl(): string | undefined {
    return this.flow.resource;
  }

  /** `client`: the authorization server refused Gatehouse's registration (`invalid_client`): forget it so the retry registers again. */
  async invalidateCredentials(scope: 'all' | 'client' | 'tokens' | 'verifier' | 'discovery'): Promise<void> {
    if ((scope === 'client' || scope === 'all') && this.flow.client?.kind === 'dynamic') {
      await this.settings.registrations.forget(this.flow.client.issuer, this.settings.redirectUrl);
      this.flow.client = undefined;
    }
    if (scope === 'discovery' || scope === 'all') this.flow.discovery = undefined;
  }
}
