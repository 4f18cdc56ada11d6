import type { FastifyRequest } from 'fastify';
import * as client from 'openid-client';
import type { LoginProviderConfig } from '../../config/login-config.js';
import { claimList } from '../../auth/strategies/credential.js';
import { LoginFailure } from '../login-failure.js';
import type { LoginFlowStore } from '../login-flow.store.js';
import { text, type IdpProfile, type LoginContext, type LoginProvider } from './login-provider.js';

type OidcConfig = Extract<LoginProviderConfig, { type: 'oidc' }>;

/** How long discovery, token and userinfo requests to the IdP may take (ms). */
const IDP_TIMEOUT_S = 10;

/**
 * An OpenID Connect provider (Google, Entra ID, Okta, Keycloak, Auth0, any issuer) through
 * `openid-client` v6: discovery of the issuer's metadata (fetched once, again after a failure),
 * authorization code flow with PKCE S256 (RFC 7636), `state` and `nonce`, and the library's ID
 * token checks (signature by the issuer's JWKS, `iss`, `aud`, `exp`, `nonce`; OpenID Connect
 * Core §3.1.3.7) plus RFC 9207's `iss` parameter when the issuer announces it.
 * An `http:` issuer is accepted (for a local IdP), an https one everywhere else.
 */
export class OidcLogin implements LoginProvider {
  readonly type = 'oidc';
  readonly name: string;
  private discovered: Promise<client.Configuration> | undefined;

  constructor(
    private readonly config: OidcConfig,
    private readonly callbackUrl: string,
    private readonly flows: LoginFlowStore,
    private readonly secure: boolean,
  ) {
    this.name = config.name ?? new URL(config.issuer).hostname;
  }

  get key(): string {
    return this.config.key;
  }

  private configuration(): Promise<client.Configuration> {
    this.discovered ??= client
      .discovery(
        new URL(this.config.issuer),
        this.config.clientId,
        undefined,
        this.config.clientSecret ? client.ClientSecretBasic(this.config.clientSecret) : client.None(),
        { execute: this.config.issuer.startsWith('http:') ? [client.allowInsecureRequests] : [], timeout: IDP_TIMEOUT_S },
      )
      .catch((error: unknown) => {
        this.discovered = undefined;
        throw new LoginFailure('idp_error', 502, `${this.name} cannot be reached right now (OpenID discovery failed: ${(error as Error).message}). Please try again later.`);
      });
    return this.discovered;
  }

  async start({ request, reply, returnTo }: LoginContext): Promise<string> {
    const configuration = await this.configuration();
    const codeVerifier = client.randomPKCECodeVerifier();
    const nonce = client.randomNonce();
    const state = await this.flows.begin(request, reply, this.secure, { provider: this.key, nonce, codeVerifier, returnTo });
    return client
      .buildAuthorizationUrl(configuration, {
        redirect_uri: this.callbackUrl,
        scope: this.config.scope ?? 'openid email profile',
        code_challenge: await client.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: 'S256',
        state,
        nonce,
      })
      .toString();
  }

  async finish({ request }: { request: FastifyRequest }): Promise<{ profile: IdpProfile; returnTo: string }> {
    const query = request.query as Record<string, unknown>;
    const flow = await this.flows.finish(request, this.secure, this.key, query.state);
    const configuration = await this.configuration();
    // The callback URL as registered at the IdP, with the query the IdP sent.
    const current = new URL(this.callbackUrl);
    current.search = new URL(request.url, 'http://x').search;
    let tokens: Awaited<ReturnType<typeof client.authorizationCodeGrant>>;
    try {
      tokens = await client.authorizationCodeGrant(configuration, current, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedState: query.state as string,
        expectedNonce: flow.nonce ?? undefined,
        idTokenExpected: true,
      });
    } catch (error) {
      throw oidcFailure(this.name, error);
    }
    const claims = tokens.claims();
    if (!claims) throw new LoginFailure('invalid_response', 400, `${this.name} sent no ID token`);
    let info: Record<string, unknown> = claims;
    const groupsClaim = this.config.groupsClaim ?? 'groups';
    if ((claims.email === undefined || claimList(claims, groupsClaim).length === 0) && configuration.serverMetadata().userinfo_endpoint) {
      try {
        info = { ...(await client.fetchUserInfo(configuration, tokens.access_token, claims.sub)), ...claims };
      } catch {
        // Userinfo only adds optional claims; the ID token already identifies the person.
      }
    }
    return {
      profile: {
        issuer: claims.iss,
        subject: claims.sub,
        email: text(info.email)?.toLowerCase() ?? null,
        emailVerified: info.email_verified === true,
        displayName: text(info.name) ?? text(info.preferred_username),
        groups: claimList(info, groupsClaim),
        amr: Array.isArray(claims.amr) ? claims.amr.filter((v): v is string => typeof v === 'string') : undefined,
        authTime: typeof claims.auth_time === 'number' ? claims.auth_time * 1000 : undefined,
      },
      returnTo: flow.returnTo,
    };
  }
}

/** A failed callback as the person should read it (never with the code or tokens). */
function oidcFailure(name: string, error: unknown): LoginFailure {
  if (error instanceof client.AuthorizationResponseError) {
    if (error.error === 'access_denied') return new LoginFailure('access_denied', 403, `${name} did not let you sign in (access denied).`);
    return new LoginFailure('idp_error', 400, `${name} refused the sign-in: ${error.error}.`);
  }
  if (error instanceof client.ResponseBodyError) return new LoginFailure('idp_error', 502, `${name} refused to redeem the sign-in: ${error.error}.`);
  // openid-client wraps oauth4webapi's specific reason (e.g. 'unexpected ID Token "nonce" claim value') as the cause.
  const cause = (error as { cause?: unknown }).cause;
  const message = cause instanceof Error ? cause.message : ((error as Error).message ?? String(error));
  // oauth4webapi's checks (nonce, state, iss, aud, signature, expiry) throw with a reason.
  return new LoginFailure('invalid_response', 400, `${name}'s answer failed a security check (${message.slice(0, 160)}). Please sign in again.`);
}
