/**
 * Permissions a route can require; keys carry them as scopes, users get them from roles.
 *
 * - `mcp`: the MCP endpoint (`/mcp`, `/mcp/<server>`); policies decide per operation.
 * - `admin:read`: every admin view (servers, users, keys, policies, server-wide secret names).
 * - `admin:write`: admin changes that do not start processes or fetches: users' roles, policies.
 * - `servers:write`: registering, changing, enabling, disabling and deleting upstream servers
 *   and setting their server-wide secrets. A stdio server is a command Gatehouse runs on its
 *   host, an HTTP server a URL it fetches, and server secrets are injected into both: grant it
 *   like shell access (docs/auth.md). Not implied by `admin:write`.
 */
export const PERMISSIONS = ['mcp', 'admin:read', 'admin:write', 'servers:write'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** How a principal proved who it is. */
export type AuthMethod = 'none' | 'bearer' | 'api_key' | 'oauth2' | 'trusted_header';

/**
 * Whoever makes a request, however they authenticated: every strategy yields this shape, and
 * nothing downstream (guards, policies, sessions, audit) needs to know which strategy it was.
 */
export interface Principal {
  /** `users.id`, when the principal is (or belongs to) a user. */
  userId: string | null;
  /** A stable identifier for session binding and audit: `<method>:<subject>`. */
  id: string;
  displayName: string;
  email: string | null;
  roles: string[];
  groups: string[];
  /** Effective permissions (see {@link Permission}). */
  scopes: string[];
  method: AuthMethod;
  /** The API key's id, when authenticated by one. */
  keyId: string | null;
  /**
   * When the credential itself expires (ms since the epoch): a JWT's `exp`, an API key's
   * `expires_at`; null or absent when it does not. Keys minted by this principal never outlive it.
   */
  credentialExpiresAt?: number | null;
}

/** Roles Gatehouse itself gives meaning to; other role names may be used in policies. */
export const ROLES = ['admin', 'member'] as const;
export type Role = (typeof ROLES)[number];

/** What each role may do: admins everything (`servers:write` included), everyone else the MCP endpoint. */
export function permissionsFor(roles: readonly string[]): Permission[] {
  return roles.includes('admin') ? [...PERMISSIONS] : ['mcp'];
}

/**
 * Strategy `none` alone (local use): one anonymous principal with every permission — the seed
 * projects' behaviour for `MCP_AUTH_STRATEGY=none`.
 */
export const ANONYMOUS_PRINCIPAL: Principal = Object.freeze({
  userId: null,
  id: 'none:anonymous',
  displayName: 'anonymous',
  email: null,
  roles: ['admin'],
  groups: [],
  scopes: [...PERMISSIONS],
  method: 'none',
  keyId: null,
});

/**
 * A request without credentials where credentials are optional (`none` next to other
 * strategies, `MCP_AUTH_REQUIRE=false`, or an MCP `initialize` with
 * `MCP_SESSION_AUTH_REQUIRE_FOR_SESSION=false`): may use the MCP endpoint, nothing else.
 */
export const UNAUTHENTICATED_PRINCIPAL: Principal = Object.freeze({
  userId: null,
  id: 'none:unauthenticated',
  displayName: 'unauthenticated',
  email: null,
  roles: [],
  groups: [],
  scopes: ['mcp'],
  method: 'none',
  keyId: null,
});

export const isUnauthenticated = (p: Principal): boolean => p.id === UNAUTHENTICATED_PRINCIPAL.id;

/**
 * Whether `principal` holds `permission`. `admin:write` implies `admin:read`; nothing implies
 * `servers:write` (a key scoped `admin:write` alone cannot make Gatehouse run a command).
 */
export function holds(principal: Principal, permission: Permission): boolean {
  return principal.scopes.includes(permission) || (permission === 'admin:read' && principal.scopes.includes('admin:write'));
}
