/**
 * The sign-in part of the configuration (issue 13, "Login at the team's identity provider"):
 * identity providers, who may sign in, local accounts and browser sessions. Parsed from the
 * `GATEHOUSE_LOGIN_*`, `GATEHOUSE_BROWSER_SESSION_*` and seed `MCP_OAUTH_CLIENT_*` variables that
 * config.schema.ts declares; kept here so that schema gains only a few lines.
 */
import { z } from 'zod';

/** Provider keys appear in URLs (`/login/<key>`): short, lower-case, URL-safe; `local` is reserved. */
export const PROVIDER_KEY = /^[a-z][a-z0-9_-]{0,31}$/;

const url = (what: string) =>
  z.string({ error: `${what}: expected an https or http URL` }).refine((s) => {
    try {
      return ['https:', 'http:'].includes(new URL(s).protocol);
    } catch {
      return false;
    }
  }, `${what}: expected an https or http URL`);

const common = {
  key: z
    .string({ error: 'key: expected a provider key such as google' })
    .regex(PROVIDER_KEY, 'key: expected [a-z][a-z0-9_-]{0,31}, e.g. google')
    .refine((k) => k !== 'local', 'key: "local" is reserved for Gatehouse passwords'),
  /** Shown on the login page's button ("Sign in with <name>"). */
  name: z.string().min(1).max(60).optional(),
  clientId: z.string({ error: 'clientId: required' }).min(1, 'clientId: required'),
  clientSecret: z.string().min(1).optional(),
  scope: z.string().min(1).max(1000).optional(),
  /** Where the IdP sends the browser back; default `PUBLIC_URL/login/<key>/callback`. */
  callbackUrl: url('callbackUrl').optional(),
  /** Claim holding the user's groups (dots for nesting), default `groups`. */
  groupsClaim: z.string().min(1).max(200).optional(),
};

const oidcProvider = z
  .object({
    ...common,
    type: z.literal('oidc'),
    /** The OpenID Provider's issuer; its `/.well-known/openid-configuration` is fetched. */
    issuer: url('issuer'),
  })
  .strict();

const oauth2Provider = z
  .object({
    ...common,
    type: z.literal('oauth2'),
    authorizationUrl: url('authorizationUrl'),
    tokenUrl: url('tokenUrl'),
    userinfoUrl: url('userinfoUrl'),
    /** Stands in for the missing `iss` in the user's identity; default the authorization URL's origin. */
    issuer: z.string().min(1).max(500).optional(),
    /** The userinfo field that identifies the person; default `sub`, then `id` (GitHub). */
    subjectClaim: z.string().min(1).max(200).optional(),
    /**
     * Plain OAuth2 APIs rarely say whether an email is verified: true trusts the userinfo
     * `email` as verified (GitHub shows only verified emails publicly). Default false: only an
     * `email_verified: true` field counts.
     */
    trustEmail: z.boolean().optional(),
  })
  .strict();

/** One entry of `GATEHOUSE_LOGIN_PROVIDERS`. */
export const loginProviderSchema = z.discriminatedUnion('type', [oidcProvider, oauth2Provider], {
  error: 'type: expected "oidc" or "oauth2"',
});
export type LoginProviderConfig = z.output<typeof loginProviderSchema>;

/** `GATEHOUSE_LOGIN_PROVIDERS`: a JSON array of providers with distinct keys. */
export const loginProvidersSchema = z
  .array(loginProviderSchema)
  .max(20)
  .refine((list) => new Set(list.map((p) => p.key)).size === list.length, 'two providers share a key');

/**
 * Parses `GATEHOUSE_LOGIN_PROVIDERS`. Returns the list, or what is accepted naming the entry and
 * field that is wrong (the value itself is never echoed: it holds client secrets).
 */
export function parseLoginProviders(raw: string): { ok: true; value: LoginProviderConfig[] } | { ok: false, message: string } {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, message: 'a JSON array of providers such as [{"key":"google","type":"oidc","issuer":"https://accounts.google.com","clientId":"…","clientSecret":"…"}] (this value is not JSON)' };
  }
  const result = loginProvidersSchema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const issue = result.error.issues[0];
  const where = issue.path.length ? `entry [${String(issue.path[0])}]${issue.path.slice(1).map((p) => `.${String(p)}`).join('')}: ` : '';
  return { ok: false, message: `a JSON array of providers (${where}${issue.message})` };
}

/** `GATEHOUSE_LOGIN_GROUP_ROLES` item: `<IdP group>=<Gatehouse role>`. */
export const GROUP_ROLE_ITEM = /^[^=\s,]{1,200}=[a-z][a-z0-9_-]{0,62}$/;

/** The login settings as the app uses them. */
export interface LoginConfig {
  providers: LoginProviderConfig[];
  /** Lower-case email domains allowed to sign in through an IdP; empty: any. */
  allowedDomains: string[];
  /** Refuse IdP sign-ins whose email is not verified (and link emails only when verified). */
  requireVerifiedEmail: boolean;
  /** IdP group → Gatehouse roles it grants; roles named here follow the IdP at each sign-in. */
  groupRoles: { group: string; role: string }[];
  /** Show the password form and accept `POST /login/local`. */
  localEnabled: boolean;
  /** Failed password attempts per account, and per client address, within `failureWindowMs`. */
  maxFailuresPerAccount: number;
  maxFailuresPerAddress: number;
  failureWindowMs: number;
  /** A browser session ends this long after sign-in (ms) … */
  sessionTtlMs: number;
  /** … or after this long unused (ms). */
  sessionIdleMs: number;
}

/** The raw fields {@link loginConfigFrom} reads (already parsed by the env schema). */
export interface LoginEnv {
  GATEHOUSE_LOGIN_PROVIDERS?: LoginProviderConfig[];
  MCP_OAUTH_CLIENT_ID?: string;
  MCP_OAUTH_CLIENT_SECRET?: string;
  MCP_OAUTH_AUTH_URL?: URL;
  MCP_OAUTH_TOKEN_URL?: URL;
  MCP_OAUTH_USERINFO_URL?: URL;
  MCP_OAUTH_CALLBACK_URL?: URL;
  MCP_OAUTH_SCOPE?: string;
  GATEHOUSE_LOGIN_ALLOWED_DOMAINS?: string[];
  GATEHOUSE_LOGIN_REQUIRE_VERIFIED_EMAIL: boolean;
  GATEHOUSE_LOGIN_GROUP_ROLES?: string[];
  GATEHOUSE_LOGIN_LOCAL: boolean;
  GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT: number;
  GATEHOUSE_LOGIN_MAX_FAILURES_PER_ADDRESS: number;
  GATEHOUSE_LOGIN_FAILURE_WINDOW: number;
  GATEHOUSE_BROWSER_SESSION_TTL: number;
  GATEHOUSE_BROWSER_SESSION_IDLE: number;
}

/**
 * Builds {@link LoginConfig}. The seed names `MCP_OAUTH_CLIENT_ID`, `MCP_OAUTH_AUTH_URL`,
 * `MCP_OAUTH_TOKEN_URL`, `MCP_OAUTH_USERINFO_URL` (+ secret, callback, scope) add one plain
 * OAuth2 provider with key `oauth`, after those of `GATEHOUSE_LOGIN_PROVIDERS`.
 */
export function loginConfigFrom(e: LoginEnv): LoginConfig {
  const providers = [...(e.GATEHOUSE_LOGIN_PROVIDERS ?? [])];
  if (e.MCP_OAUTH_CLIENT_ID && e.MCP_OAUTH_AUTH_URL && e.MCP_OAUTH_TOKEN_URL && e.MCP_OAUTH_USERINFO_URL) {
    providers.push({
      key: 'oauth',
      type: 'oauth2',
      name: e.MCP_OAUTH_AUTH_URL.hostname,
      clientId: e.MCP_OAUTH_CLIENT_ID,
      clientSecret: e.MCP_OAUTH_CLIENT_SECRET,
      authorizationUrl: e.MCP_OAUTH_AUTH_URL.toString(),
      tokenUrl: e.MCP_OAUTH_TOKEN_URL.toString(),
      userinfoUrl: e.MCP_OAUTH_USERINFO_URL.toString(),
      callbackUrl: e.MCP_OAUTH_CALLBACK_URL?.toString(),
      scope: e.MCP_OAUTH_SCOPE,
    });
  }
  return {
    providers,
    allowedDomains: (e.GATEHOUSE_LOGIN_ALLOWED_DOMAINS ?? []).map((d) => d.toLowerCase().replace(/^@/, '')),
    requireVerifiedEmail: e.GATEHOUSE_LOGIN_REQUIRE_VERIFIED_EMAIL,
    groupRoles: (e.GATEHOUSE_LOGIN_GROUP_ROLES ?? []).map((item) => {
      const at = item.lastIndexOf('=');
      return { group: item.slice(0, at), role: item.slice(at + 1) };
    }),
    localEnabled: e.GATEHOUSE_LOGIN_LOCAL,
    maxFailuresPerAccount: e.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT,
    maxFailuresPerAddress: e.GATEHOUSE_LOGIN_MAX_FAILURES_PER_ADDRESS,
    failureWindowMs: e.GATEHOUSE_LOGIN_FAILURE_WINDOW,
    sessionTtlMs: e.GATEHOUSE_BROWSER_SESSION_TTL,
    sessionIdleMs: e.GATEHOUSE_BROWSER_SESSION_IDLE,
  };
}
