import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import type Provider from 'oidc-provider';
import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import { DataSource } from 'typeorm';
import { PERMISSIONS } from '../auth/principal.js';
import { html, renderPage, type SafeHtml } from '../common/html/page.js';
import { SafeFetch } from '../common/http/safe-fetch.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { UsersService } from '../users/users.service.js';
import { pollTooSoon } from './device-polling.js';
import { PostgresAdapter, sweepExpiredOAuthModels } from './postgres-adapter.js';
import { GRANT_ID_CLAIM, RevokedGrantsService } from './revoked-grants.service.js';
import { SigningKeysService } from './signing-keys.service.js';
import type { SignedInUser } from './signed-in-user.js';

/** Paths oidc-provider answers (docs/oauth-server.md, "Endpoints"); everything else is Nest's. */
export const OAUTH_ROUTES = {
  authorization: '/oauth/authorize',
  token: '/oauth/token',
  registration: '/oauth/register',
  revocation: '/oauth/revoke',
  introspection: '/oauth/introspect',
  jwks: '/oauth/jwks',
  device_authorization: '/oauth/device_authorization',
  code_verification: '/device',
  end_session: '/oauth/logout',
  userinfo: '/oauth/userinfo',
  pushed_authorization_request: '/oauth/par',
} as const;

/** The request's signed-in Gatehouse user, put on the raw request by the mount before oidc-provider runs. */
export const SIGNED_IN = Symbol('gatehouse.signedIn');
export type RawWithUser = { [SIGNED_IN]?: SignedInUser | null };

/** Device codes: 8 letters (RFC 8628 §6.1, base-20 without vowels), 10 minutes. */
const DEVICE_CODE_TTL_SEC = 600;

/** An `http:` redirect that is not loopback, or a non-https web URL: the consent page warns about it. */
export function redirectNeedsWarning(uri: string): boolean {
  const u = URL.parse(uri);
  if (!u) return true;
  if (u.protocol === 'https:') return false;
  if (u.protocol === 'http:') return !isLoopbackHost(u.hostname);
  return false; // a private-use scheme (cursor://, vscode://) is a native app's own
}

function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** `uri` without the port when it is an http loopback URI (RFC 8252 §7.3), else undefined. */
function loopbackWithoutPort(uri: string): string | undefined {
  const u = URL.parse(uri);
  if (!u || u.protocol !== 'http:' || !isLoopbackHost(u.hostname)) return undefined;
  u.port = '';
  return u.href;
}

/**
 * A resource indicator (RFC 8707) this gateway serves, canonical (no trailing slash — the usual
 * cause of "authorized but 401"), or undefined: `PUBLIC_URL/mcp` or `PUBLIC_URL/mcp/<server>`.
 */
export function canonicalResource(publicUrl: string, resource: string): string | undefined {
  const trimmed = resource.replace(/\/+$/, '');
  const mcp = `${publicUrl}/mcp`;
  if (trimmed === mcp) return mcp;
  if (trimmed.startsWith(`${mcp}/`)) {
    const rest = trimmed.slice(mcp.length + 1);
    if (rest !== '' && !rest.includes('/') && !rest.includes('?') && !rest.includes('#')) return trimmed;
  }
  return undefined;
}

/**
 * The embedded oidc-provider (certified OpenID provider, OAuth 2.1 authorization server): built
 * on first use (after migrations; its keys come from PostgreSQL) and rebuilt when the key set
 * changes. Its configuration is Gatehouse's rules: authorization code + PKCE S256 only, public
 * clients (`none`) and `private_key_jwt`, resource indicators bound to this gateway's MCP
 * resources, JWT access tokens signed ES256, refresh token rotation, dynamic registration (RFC
 * 7591), Client ID Metadata Documents fetched with {@link SafeFetch}, device authorization (RFC
 * 8628), revocation, introspection, RFC 9207 `iss`. All state through {@link PostgresAdapter}.
 */
@Injectable()
export class OAuthProviderService implements OnApplicationShutdown {
  private current: { provider: Provider; version: string } | undefined;
  private readonly fetcher: SafeFetch;
  private sweep: NodeJS.Timeout | undefined;

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly db: DataSource,
    private readonly keys: SigningKeysService,
    private readonly users: UsersService,
    private readonly revocations: RevokedGrantsService,
  ) {
    const { fetch } = config.oauthServer;
    this.fetcher = new SafeFetch({ allowPrivate: fetch.allowPrivate, maxBytes: fetch.maxBytes, timeoutMs: fetch.timeoutMs });
  }

  /** Test hook: the fetcher of Client ID Metadata Documents (tests swap in one trusting their CA). */
  useFetcher(fetcher: SafeFetch): void {
    Object.assign(this, { fetcher });
  }

  /** The provider for the current key set. */
  async provider(): Promise<Provider> {
    const keys = await this.keys.keys();
    if (this.current?.version === keys.version) return this.current.provider;
    // Loaded on first use: a Gatehouse without the authorization server never pays its import.
    const oidc = await import('oidc-provider');
    const provider = this.build(oidc, keys.signing, keys.cookieKeys);
    this.current = { provider, version: keys.version };
    this.sweep ??= setInterval(() => void sweepExpiredOAuthModels(this.db).catch(() => undefined), 10 * 60_000).unref();
    return provider;
  }

  onApplicationShutdown(): void {
    if (this.sweep) clearInterval(this.sweep);
    void this.fetcher.close();
  }

  private build(oidc: typeof import('oidc-provider'), signing: Configuration['jwks'] extends infer J ? (J extends { keys: infer K } ? K : never) : never, cookieKeys: string[]): Provider {
    const { config } = this;
    const as = config.oauthServer;
    const publicUrl = config.http.publicUrl;
    const secure = publicUrl.startsWith('https:');
    const ttlSec = (ms: number) => Math.floor(ms / 1000);
    const { errors, interactionPolicy } = oidc;
    const policy = interactionPolicy.base();
    // The Gatehouse sign-in decides who the user is: a browser whose oidc-provider session
    // names someone else (or who signed out) goes through "login" again.
    policy.get('login')!.checks.add(
      new interactionPolicy.Check('gatehouse_session', 'the Gatehouse sign-in differs from the session', (ctx) => {
        const user = (ctx.req as RawWithUser)[SIGNED_IN];
        return !user || user.userId !== ctx.oidc.session?.accountId ? interactionPolicy.Check.REQUEST_PROMPT : interactionPolicy.Check.NO_NEED_TO_PROMPT;
      }),
      0,
    );
    // MCP authorization spec, "Confused Deputy Problem": clients that registered themselves (or
    // are named by a metadata document) get the consent page on every authorization.
    policy.get('consent')!.checks.add(
      new interactionPolicy.Check('gatehouse_untrusted_client', 'clients that registered themselves are always confirmed', async (ctx) => {
        if (ctx.oidc.result?.consent) return interactionPolicy.Check.NO_NEED_TO_PROMPT;
        return (await this.isPreRegistered(ctx.oidc.client!.clientId)) ? interactionPolicy.Check.NO_NEED_TO_PROMPT : interactionPolicy.Check.REQUEST_PROMPT;
      }),
    );
    const configuration: Configuration = {
      adapter: (name: string) => new PostgresAdapter(name, this.db, { refreshReuseGraceMs: as.refreshReuseGraceMs, revocations: this.revocations }),
      // The grant id in every access token, so revoking the approval refuses its JWTs at once (RevokedGrantsService).
      extraTokenClaims: (_ctx, token) => Promise.resolve(token.kind === 'AccessToken' && token.grantId ? { [GRANT_ID_CLAIM]: token.grantId } : undefined),
      jwks: { keys: signing },
      cookies: { keys: cookieKeys, long: { signed: true, secure, sameSite: 'lax' }, short: { signed: true, secure, sameSite: 'lax' } },
      routes: OAUTH_ROUTES,
      scopes: ['openid', 'offline_access', 'email', 'profile', ...PERMISSIONS],
      claims: { openid: ['sub'], email: ['email'], profile: ['name'] },
      responseTypes: ['code'],
      clientAuthMethods: ['none', 'private_key_jwt', 'client_secret_basic', 'client_secret_post'],
      clientDefaults: { grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', id_token_signed_response_alg: 'ES256' },
      pkce: { required: () => true },
      rotateRefreshToken: true,
      issueRefreshToken: (_ctx, client) => Promise.resolve(client.grantTypeAllowed('refresh_token')),
      expiresWithSession: () => Promise.resolve(false),
      ttl: {
        AccessToken: ttlSec(as.accessTokenTtlMs),
        AuthorizationCode: 60,
        DeviceCode: DEVICE_CODE_TTL_SEC,
        Grant: ttlSec(as.refreshTokenTtlMs),
        IdToken: 3600,
        Interaction: 3600,
        RefreshToken: ttlSec(as.refreshTokenTtlMs),
        Session: 14 * 24 * 3600,
      },
      interactions: { url: (_ctx, interaction) => Promise.resolve(`/interaction/${interaction.uid}`), policy },
      findAccount: async (_ctx, sub) => {
        const user = await this.users.byId(sub);
        if (!user || user.disabled) return undefined;
        return {
          accountId: user.id,
          claims: () => Promise.resolve({ sub: user.id, ...(user.email ? { email: user.email } : {}), ...(user.displayName ? { name: user.displayName } : {}) }),
        };
      },
      loadExistingGrant: async (ctx) => {
        const explicit = ctx.oidc.result?.consent?.grantId;
        if (explicit) return ctx.oidc.provider.Grant.find(explicit);
        const accountId = ctx.oidc.session?.accountId;
        if (!accountId || !ctx.oidc.client) return undefined;
        // Approvals are remembered per user and client, whichever browser session asks.
        const rows = await this.db.query<{ id: string }[]>(
          "SELECT id FROM oauth_models WHERE model = 'Grant' AND account_id = $1 AND client_id = $2 AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC LIMIT 1",
          [accountId, ctx.oidc.client.clientId],
        );
        return rows[0] ? ctx.oidc.provider.Grant.find(rows[0].id) : undefined;
      },
      fetch: async (url, options) => {
        const accept = new Headers(options?.headers).get('accept') ?? 'application/json';
        const response = await this.fetcher.get(typeof url === 'string' ? url : url instanceof URL ? url.href : url.url, { accept });
        return new Response(new Uint8Array(response.body), { status: response.status, headers: response.headers });
      },
      features: {
        devInteractions: { enabled: false },
        registration: { enabled: as.dynamicRegistration, idFactory: () => crypto.randomUUID() },
        // RFC 7009 §2.1: a client revokes only the tokens issued to it (an unknown token is answered 200 all the same).
        revocation: { enabled: true, allowedPolicy: (_ctx, client, token) => Promise.resolve(token.clientId === client.clientId) },
        introspection: { enabled: true },
        userinfo: { enabled: true },
        rpInitiatedLogout: { enabled: false },
        deviceFlow: {
          enabled: true,
          charset: 'base-20',
          mask: '****-****',
          userCodeInputSource: (ctx, form, _out, err) => this.devicePage(ctx, form, err),
          userCodeConfirmSource: (ctx, form, client, _info, userCode) => this.deviceConfirmPage(ctx, form, client.clientName ?? client.clientId, userCode),
          successSource: (ctx) => this.send(ctx, 'Device connected', html`<p>The device is connected to Gatehouse. You can close this page.</p>`),
        },
        resourceIndicators: {
          enabled: true,
          // No `resource`: the whole gateway.
          defaultResource: (_ctx, _client, oneOf) => Promise.resolve(oneOf ?? `${publicUrl}/mcp`),
          useGrantedResource: () => Promise.resolve(true),
          getResourceServerInfo: (_ctx, resource) => {
            const audience = canonicalResource(publicUrl, resource);
            if (!audience) throw new errors.InvalidTarget(`resource must be ${publicUrl}/mcp or ${publicUrl}/mcp/<server>`);
            return Promise.resolve({
              audience,
              scope: PERMISSIONS.join(' '),
              accessTokenTTL: ttlSec(as.accessTokenTtlMs),
              accessTokenFormat: 'jwt',
              jwt: { sign: { alg: 'ES256' } },
            });
          },
        },
        ...({
          clientIdMetadataDocument: {
            enabled: as.clientMetadataDocuments,
            ack: 'draft-02',
            allowFetch: () => Promise.resolve(true),
            allowClient: () => Promise.resolve(true),
            cacheDuration: { min: 30, max: 86_400 },
          },
        } as object),
      },
      enabledJWA: { authorizationSigningAlgValues: ['ES256', 'RS256'], idTokenSigningAlgValues: ['ES256', 'RS256'], clientAuthSigningAlgValues: ['ES256', 'RS256', 'PS256', 'EdDSA'] },
      fetchResponseBodyLimits: { 'client_id metadata document': as.fetch.maxBytes },
      renderError: (ctx, out) => {
        this.send(ctx, 'Sign-in could not continue', html`<p class="error">${out.error}</p><p>${out.error_description ?? ''}</p>`);
        return Promise.resolve();
      },
    };
    const provider = new oidc.default(publicUrl, configuration);
    provider.proxy = true;
    // RFC 8252 §7.3: a loopback redirect URI matches at any port, for every client (Claude Code
    // registers `http://localhost/callback` and listens on a random port); oidc-provider only
    // relaxes the port for `application_type: native`.
    const proto = provider.Client.prototype as unknown as { redirectUriAllowed(this: { redirectUris: string[] }, value: string): boolean };
    const original: (this: { redirectUris: string[] }, value: string) => boolean = Reflect.get(proto, 'redirectUriAllowed');
    proto.redirectUriAllowed = function (this: { redirectUris: string[] }, value: string): boolean {
      if (original.call(this, value)) return true;
      const bare = loopbackWithoutPort(value);
      return bare !== undefined && this.redirectUris.some((allowed) => loopbackWithoutPort(allowed) === bare);
    };
    return provider;
  }

  /** Whether this poll of device code `deviceCode` comes too soon (answer `slow_down`); see {@link pollTooSoon}. */
  pollTooSoon(deviceCode: string): Promise<boolean> {
    return pollTooSoon(this.db, deviceCode);
  }

  /** Whether `clientId` was registered by an admin (not dynamically, not a metadata document). */
  async isPreRegistered(clientId: string): Promise<boolean> {
    const rows = await this.db.query<unknown[]>("SELECT 1 FROM oauth_models WHERE model = 'Client' AND id = $1 AND source = 'admin'", [clientId]);
    return rows.length > 0;
  }

  private devicePage(ctx: KoaContextWithOIDC, form: string, err?: unknown): Promise<void> {
    const xsrf = /name="xsrf" value="([^"]*)"/.exec(form)?.[1] ?? '';
    const wrong = err ? html`<p class="error" role="alert">That code is not valid or has expired. Check the code on your device and try again.</p>` : false;
    this.send(
      ctx,
      'Connect a device',
      html`${wrong}<p>Type the code your device or terminal shows.</p>
        <form method="post" action="${OAUTH_ROUTES.code_verification}">
          <input type="hidden" name="xsrf" value="${xsrf}">
          <label for="user_code">Code</label>
          <input type="text" id="user_code" name="user_code" autocomplete="off" autocapitalize="characters" spellcheck="false" required placeholder="XXXX-XXXX">
          <button type="submit">Continue</button>
        </form>`,
    );
    return Promise.resolve();
  }

  private deviceConfirmPage(ctx: KoaContextWithOIDC, form: string, clientName: string, userCode: string): Promise<void> {
    const xsrf = /name="xsrf" value="([^"]*)"/.exec(form)?.[1] ?? '';
    this.send(
      ctx,
      'Confirm the device',
      html`<p><strong>${clientName}</strong> asks to connect with the code</p><p><code>${userCode}</code></p>
        <p class="muted">Continue only if your device shows this code and you started this.</p>
        <form method="post" action="${OAUTH_ROUTES.code_verification}">
          <input type="hidden" name="xsrf" value="${xsrf}"><input type="hidden" name="user_code" value="${userCode}">
          <input type="hidden" name="confirm" value="yes">
          <button type="submit">Continue</button>
          <button type="submit" class="secondary" name="abort" value="yes">Cancel</button>
        </form>`,
    );
    return Promise.resolve();
  }

  private send(ctx: KoaContextWithOIDC, title: string, content: SafeHtml): void {
    const page = renderPage({ title, content });
    for (const [k, v] of Object.entries(page.headers)) ctx.set(k, v);
    ctx.type = 'html';
    ctx.body = page.body;
  }
}
