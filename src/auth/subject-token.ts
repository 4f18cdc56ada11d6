import type { Principal } from './principal.js';

/**
 * The bearer token a principal authenticated with (a JWT or an OAuth access token), kept beside
 * the principal — never on it — for one use: RFC 8693 token exchange on the caller's behalf
 * (`src/upstream-oauth/token-exchange.service.ts`). A WeakMap, so the token is not a property
 * any log, audit record or API view could serialize, and it goes when the principal does (the
 * token strategies cache one principal object per token).
 */
const tokens = new WeakMap<Principal, string>();

/** Records `token` as what `principal` authenticated with (token strategies only). */
export function rememberSubjectToken(principal: Principal, token: string): void {
  tokens.set(principal, token);
}

/** The token `principal` authenticated with, when it did with a bearer token (not an API key, a header, or `none`). */
export function subjectTokenOf(principal: Principal): string | undefined {
  return tokens.get(principal);
}
