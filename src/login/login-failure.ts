/**
 * Why a sign-in was refused, as shown on the login page: a stable `code` (also in the page's
 * `data-error` attribute, for tests and support), the HTTP status, and a message for the person.
 * Messages name what went wrong but never echo tokens, codes or secrets.
 */
export type LoginFailureCode =
  | 'unknown_provider'
  | 'state_mismatch'
  | 'idp_error'
  | 'invalid_response'
  | 'access_denied'
  | 'domain_not_allowed'
  | 'email_unverified'
  | 'email_missing'
  | 'user_disabled'
  | 'invalid_credentials'
  | 'throttled'
  | 'csrf'
  | 'local_disabled';

export class LoginFailure extends Error {
  /**
   * @param code stable machine-readable reason
   * @param status HTTP status of the page that reports it
   * @param retryAfterMs for `throttled`: ms until another attempt is allowed
   */
  constructor(
    readonly code: LoginFailureCode,
    readonly status: number,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'LoginFailure';
  }
}
