import { OAuthError, refreshAuthorization, type AuthorizationServerMetadata, type FetchLike, type OAuthTokens } from '@modelcontextprotocol/client';
import { SafeFetchError } from '../common/http/safe-fetch.js';

/** The authorization server a connection's tokens came from, and how Gatehouse authenticates there. */
export interface ProviderBinding {
  issuer: string | null;
  tokenEndpoint: string;
  revocationEndpoint?: string | null;
  clientId: string;
  clientSecret?: string | null;
  /** `client_secret_basic`, `client_secret_post` or `none`; default: basic with a secret, else none. */
  authMethod?: string | null;
  /** RFC 8707 resource sent with the request. */
  resource?: string | null;
}

/**
 * A token-endpoint failure. `permanent` when the provider refused the grant itself
 * (`invalid_grant`: the refresh token is revoked, expired or already used), which only a new
 * authorization fixes; otherwise (5xx, network, timeout, another error code) the call may be
 * retried later. `code` is the provider's OAuth error code when it sent one. The message names
 * the provider's code and description, never a token.
 */
export class ProviderError extends Error {
  override name = 'ProviderError';
  constructor(
    message: string,
    readonly permanent: boolean,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

/** A provider's text (error description) as echoed: one line, at most 200 characters, without `secrets`. */
function clean(text: string, secrets: readonly string[]): string {
  let out = text.replace(/[\r\n\t]+/g, ' ').slice(0, 200);
  for (const s of secrets) if (s) out = out.split(s).join('[REDACTED]');
  return out;
}

/** Maps what the SDK's token request threw to a {@link ProviderError}. */
export function providerError(error: unknown, what: string, secrets: readonly string[]): ProviderError {
  if (error instanceof OAuthError) {
    const code = String(error.code);
    const description = error.message && error.message !== code ? `: ${clean(error.message, secrets)}` : '';
    return new ProviderError(`${what} was refused by the provider (${code}${description})`, code === 'invalid_grant', code);
  }
  if (error instanceof SafeFetchError) return new ProviderError(`${what} failed: ${clean(error.message, secrets)}`, false, undefined);
  const message = error instanceof Error ? error.message : String(error);
  return new ProviderError(`${what} failed: ${clean(message, secrets)}`, false, undefined);
}

function metadataOf(binding: ProviderBinding): AuthorizationServerMetadata {
  const method = binding.authMethod ?? (binding.clientSecret ? 'client_secret_basic' : 'none');
  return {
    issuer: binding.issuer ?? new URL(binding.tokenEndpoint).origin,
    token_endpoint: binding.tokenEndpoint,
    // Not used by a token request; the schema requires them.
    authorization_endpoint: binding.tokenEndpoint,
    response_types_supported: ['code'],
    token_endpoint_auth_methods_supported: [method],
  };
}

/**
 * Refreshes with the SDK's `refreshAuthorization` (RFC 6749 §6), at the bound token endpoint,
 * with the bound client credentials and resource. The provider may rotate the refresh token;
 * when it does not, the old one is kept (the SDK's rule).
 * @throws ProviderError
 */
export async function refreshTokens(binding: ProviderBinding, refreshToken: string, fetchFn: FetchLike): Promise<OAuthTokens> {
  try {
    return await refreshAuthorization(binding.issuer ?? binding.tokenEndpoint, {
      metadata: metadataOf(binding),
      clientInformation: { client_id: binding.clientId, ...(binding.clientSecret ? { client_secret: binding.clientSecret } : {}) },
      refreshToken,
      ...(binding.resource ? { resource: new URL(binding.resource) } : {}),
      fetchFn,
    });
  } catch (error) {
    throw providerError(error, 'the token refresh', [refreshToken, binding.clientSecret ?? '']);
  }
}

/**
 * Revokes `token` at the bound revocation endpoint (RFC 7009 §2.1: `token`, `token_type_hint`,
 * client authentication as at the token endpoint). RFC 7009 §2.2: 200 means revoked (or
 * already invalid). Resolves when revoked.
 * @throws ProviderError for any other answer or a network failure
 */
export async function revokeToken(binding: ProviderBinding, token: string, hint: 'refresh_token' | 'access_token', fetchFn: FetchLike): Promise<void> {
  if (!binding.revocationEndpoint) throw new ProviderError('the provider has no revocation endpoint', true, undefined);
  const body = new URLSearchParams({ token, token_type_hint: hint });
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
  const method = binding.authMethod ?? (binding.clientSecret ? 'client_secret_basic' : 'none');
  if (method === 'client_secret_basic' && binding.clientSecret) {
    // RFC 6749 §2.3.1: form-urlencoded id and secret, then base64.
    headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(binding.clientId)}:${encodeURIComponent(binding.clientSecret)}`).toString('base64')}`;
  } else {
    body.set('client_id', binding.clientId);
    if (method === 'client_secret_post' && binding.clientSecret) body.set('client_secret', binding.clientSecret);
  }
  let response: Response;
  try {
    response = await fetchFn(binding.revocationEndpoint, { method: 'POST', headers, body });
  } catch (error) {
    throw providerError(error, 'the revocation', [token, binding.clientSecret ?? '']);
  }
  if (response.ok) return;
  let code: string | undefined;
  try {
    code = ((await response.json()) as { error?: unknown }).error as string | undefined;
  } catch {
    code = undefined;
  }
  throw new ProviderError(`the revocation was refused by the provider (HTTP ${response.status}${typeof code === 'string' ? `, ${clean(code, [token])}` : ''})`, false, typeof code === 'string' ? code : undefined);
}
