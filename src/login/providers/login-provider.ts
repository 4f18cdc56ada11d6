import type { FastifyReply, FastifyRequest } from 'fastify';

/** What an identity provider said about the person who just signed in there. */
export interface IdpProfile {
  /** OIDC `iss` (or the configured stand-in for plain OAuth2). */
  issuer: string;
  /** OIDC `sub` (or the userinfo field named by `subjectClaim`). */
  subject: string;
  email: string | null;
  /** True only when the IdP says so (`email_verified: true`), or the provider is set to `trustEmail`. */
  emailVerified: boolean;
  displayName: string | null;
  groups: string[];
  /** OIDC `amr`, when the IdP sent one. */
  amr?: string[];
  /** OIDC `auth_time` in ms since the epoch, when sent. */
  authTime?: number;
}

/** The request/response pair of a login route, plus where to go afterwards. */
export interface LoginContext {
  request: FastifyRequest;
  reply: FastifyReply;
  /** Same-origin path to land on after signing in. */
  returnTo: string;
}

/** One configured identity provider: starts a sign-in and finishes its callback. */
export interface LoginProvider {
  readonly key: string;
  /** Shown on the login page. */
  readonly name: string;
  readonly type: 'oidc' | 'oauth2';
  /**
   * Records a new flow (state, PKCE verifier, nonce, return path) and returns the IdP's
   * authorization URL to redirect the browser to. Throws {@link LoginFailure} `idp_error`
   * when the IdP cannot be reached (OIDC discovery).
   */
  start(context: LoginContext): Promise<string>;
  /**
   * Finishes the callback in `context.request` (query `code`, `state`, or `error`): consumes the
   * flow, redeems the code, checks the answer (ID token for OIDC) and returns the profile plus the
   * flow's return path. Throws {@link LoginFailure}.
   */
  finish(context: Omit<LoginContext, 'returnTo'>): Promise<{ profile: IdpProfile; returnTo: string }>;
}

/** A userinfo/ID-token value as a display string: only non-empty strings, at most 200 characters. */
export function text(value: unknown): string | null {
  return typeof value === 'string' && value.trim() !== '' ? value.trim().slice(0, 200) : null;
}
