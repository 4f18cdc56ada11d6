/** A person signed in to Gatehouse in this browser (the contract with src/oauth-server). */
export interface SignedInUser {
  /** users.id (uuid). */
  userId: string;
  /** Opaque id of the browser session (browser_sessions.id, not the cookie value). */
  sessionId: string;
  /** Seconds since the epoch when they signed in (OIDC `auth_time`). */
  authTime: number;
  /** Provider key that authenticated them (`local` for a Gatehouse password). */
  idp: string;
  /** Authentication methods (OIDC `amr`), e.g. `["pwd"]`. */
  amr?: string[];
}
