import { z } from 'zod';
import { isIP } from 'node:net';
import { parseKeyRing } from '../secrets/secret-crypto.js';
import { OAUTH_SERVER_ENV, oauthServerConfig, refineOAuthServerEnv, type OAuthServerConfig } from './oauth-server.config.js';
import { UPSTREAM_OAUTH_ENV, upstreamOAuthConfig, type UpstreamOAuthSettings } from './upstream-oauth.config.js';
import { UPSTREAM_CONNECT_ENV, upstreamConnectConfig, type UpstreamConnectSettings } from './upstream-connect.config.js';
import { envBool, envCustom, envEnum, envInt, envList, envSecret, envSecretList, envSize, envString, envUrl } from './env-parsers.js';
import { GROUP_ROLE_ITEM, loginConfigFrom, parseLoginProviders, type LoginConfig } from './login-config.js';

export const AUTH_STRATEGIES = ['none', 'bearer', 'api_key', 'oauth2', 'trusted_header'] as const;
export type AuthStrategyName = (typeof AUTH_STRATEGIES)[number];
const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'];
const ASYMMETRIC_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/** `10.0.0.0/8`, `192.168.1.7`, `fd00::/8`: an IP address or CIDR block. */
function isCidr(s: string): boolean {
  const [address, bits, extra] = s.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  if (bits === undefined) return true;
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128);
}

/**
 * Every environment variable Gatehouse reads, in one schema. `docs/configuration.md` and
 * `.env.example` list the same names; a test keeps the three in step.
 *
 * Names follow the seed projects where they exist (`PORT`, `HOST`, `LOG_LEVEL`, `HTTP_*`,
 * `MCP_*`) so their users feel at home.
 */
export const envSchema = z.object({
  NODE_ENV: envEnum(['development', 'production', 'test'] as const).default('development'),
  PORT: envInt(1, 65535).default(3000),
  HOST: envString('a host name or IP address to listen on', (s) => /^[A-Za-z0-9.:[\]-]+$/.test(s)).default('127.0.0.1'),
  PUBLIC_URL: envUrl(['http', 'https']).optional(),
  LOG_LEVEL: envEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const).default('info'),
  LOG_FORMAT: envEnum(['json', 'pretty'] as const).optional(),

  HTTP_REQUEST_TIMEOUT: envInt(0, 3_600_000).default(300_000),
  HTTP_KEEP_ALIVE_TIMEOUT: envInt(1_000, 600_000).default(72_000),
  HTTP_MAX_REQUEST_SIZE: envSize(1024, 1024 ** 3).default(10 * 1024 ** 2),
  HTTP_BODY_TIMEOUT: envInt(0, 3_600_000).default(30_000),
  HTTP_MAX_JSON_DEPTH: envInt(8, 1_000).default(64),
  HTTP_ENABLE_CORS: envBool().default(false),
  HTTP_CORS_ORIGINS: envList('* or a comma-separated list of origins such as https://app.example.com', (s) =>
    s === '*' || /^https?:\/\/[^/\s]+$/.test(s),
  ).default(['*']),
  HTTP_CORS_METHODS: envList('a comma-separated list of HTTP methods', (s) => /^[A-Z]+$/.test(s)).default([
    'GET',
    'POST',
    'PUT',
    'PATCH',
    'DELETE',
    'OPTIONS',
  ]),
  HTTP_CORS_HEADERS: envList('a comma-separated list of header names', (s) => /^[A-Za-z0-9-]+$/.test(s)).default([
    'Content-Type',
    'Authorization',
    'X-API-Key',
    'Mcp-Session-Id',
    'MCP-Protocol-Version',
    'Mcp-Method',
    'Mcp-Name',
    'Last-Event-ID',
    'X-Request-Id',
  ]),
  HTTP_CORS_CREDENTIALS: envBool().default(false),
  HTTP_TRUST_PROXY: envString(
    'true, false, a hop count, or a comma-separated list of proxy addresses/CIDRs',
    (s) => /^[0-9A-Fa-f.:/,\s]+$|^(true|false)$/i.test(s),
  ).default('false'),

  HTTP_DNS_REBINDING_PROTECTION: envBool().default(true),
  HTTP_ALLOWED_HOSTS: envList('a comma-separated list of host names', (s) => /^[A-Za-z0-9.:[\]-]+$/.test(s)).optional(),
  MCP_FAST_PATH: envBool().default(true),
  HTTP_SESSION_TIMEOUT: envInt(1_000, 30 * 24 * 3_600_000).default(1_800_000),
  HTTP_MAX_CONCURRENT_SESSIONS: envInt(1, 1_000_000).default(100),
  HTTP_SESSION_CLEANUP_INTERVAL: envInt(1_000, 24 * 3_600_000).default(60_000),
  HTTP_MAX_SESSIONS_PER_ADDRESS: envInt(1, 1_000_000).optional(),
  HTTP_SESSION_RECLAIM_IDLE: envInt(0, 30 * 24 * 3_600_000).default(300_000),
  MCP_MAX_STREAMS_PER_SESSION: envInt(1, 100).default(2),
  MCP_MAX_STREAMS_PER_PRINCIPAL: envInt(1, 1_000_000).default(50),
  MCP_LIST_PAGE_SIZE: envInt(1, 100_000).default(500),

  HTTP_RATE_LIMIT_ENABLED: envBool().default(false),
  HTTP_RATE_LIMIT_WINDOW: envInt(1_000, 24 * 3_600_000).default(60_000),
  HTTP_RATE_LIMIT_MAX_REQUESTS: envInt(1, 100_000_000).default(600),
  HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED: envInt(1, 100_000_000).default(60),
  HTTP_RATE_LIMIT_REPLICAS: envInt(1, 1_000).default(1),
  HTTP_RATE_LIMIT_TOOLS: envList('a comma-separated list of <tool glob>=<max calls per window>, e.g. github__create_*=10', (s) =>
    /^[A-Za-z0-9_.*?-]+=\d{1,9}$/.test(s) && Number(s.split('=')[1]) >= 1,
  ).optional(),

  DATABASE_URL: envUrl(['postgres', 'postgresql']).optional(),
  DB_MIGRATE: envBool().default(true),
  DB_POOL_MAX: envInt(1, 1000).default(10),
  DB_STATEMENT_TIMEOUT: envInt(0, 3_600_000).default(30_000),
  DB_CONNECT_TIMEOUT: envInt(100, 600_000).default(5_000),
  DB_QUERY_TIMEOUT: envInt(0, 3_600_000).optional(),
  EMBEDDED_POSTGRES_DIR: envString('a directory path').default('./.data/postgres'),
  EMBEDDED_POSTGRES_PORT: envInt(1, 65535).default(54329),
  GATEHOUSE_BUS_LIVENESS_INTERVAL: envInt(100, 600_000).default(5_000),
  GATEHOUSE_BUS_LIVENESS_TIMEOUT: envInt(100, 600_000).default(3_000),

  GATEHOUSE_SERVERS_FILE: envString('a path to a YAML or JSON file').optional(),
  GATEHOUSE_POLICY_DEFAULT: envEnum(['allow', 'deny'] as const).default('allow'),
  GATEHOUSE_STDIO_IDLE_TTL: envInt(0, 7 * 24 * 3_600_000).default(0),
  GATEHOUSE_POOL_MAX: envInt(1, 10_000).default(100),
  GATEHOUSE_UPSTREAM_LIST_MAX_ITEMS: envInt(1, 10_000_000).default(10_000),
  GATEHOUSE_UPSTREAM_LIST_MAX_BYTES: envSize(1024, 1024 ** 3).default(32 * 1024 ** 2),
  GATEHOUSE_POOL_IDLE_TTL: envInt(1_000, 7 * 24 * 3_600_000).default(300_000),
  GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE: envSize(1024, 1024 ** 3).default(32 * 1024 ** 2),
  GATEHOUSE_READY_UPSTREAMS_TIMEOUT: envInt(0, 600_000).default(10_000),
  GATEHOUSE_HTTP_MAX_EVENT_SIZE: envSize(1024, 1024 ** 3).default(32 * 1024 ** 2),
  GATEHOUSE_HTTP_MAX_RESPONSE_BYTES: envSize(1024, 4 * 1024 ** 3).default(64 * 1024 ** 2),
  GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT: envInt(0, 24 * 3_600_000).default(600_000),
  GATEHOUSE_INPUT_REQUIRED_TTL: envInt(1_000, 24 * 3_600_000).default(300_000),
  GATEHOUSE_INPUT_REQUIRED_RELAY_TIMEOUT: envInt(100, 600_000).default(5_000),
  GATEHOUSE_ENCRYPTION_KEYS: envSecret(3).optional(),
  GATEHOUSE_MAX_SECRETS_PER_USER: envInt(1, 1_000_000).default(200),
  GATEHOUSE_MAX_API_KEYS_PER_USER: envInt(1, 1_000_000).default(50),
  GATEHOUSE_DATA_DIR: envString('a directory path').default('./.data'),

  SHUTDOWN_TIMEOUT: envInt(0, 600_000).default(25_000),
  SHUTDOWN_DELAY: envInt(0, 600_000).default(0),

  MCP_AUTH_STRATEGY: envList(`one or a comma-separated list of ${AUTH_STRATEGIES.join(', ')}`, (s) =>
    (AUTH_STRATEGIES as readonly string[]).includes(s),
  ).default(['none']),
  MCP_AUTH_REQUIRE: envBool().optional(),
  MCP_AUTH_ALLOW_NONE_ON_NETWORK: envBool().default(false),
  MCP_JWT_SECRET: envSecret(32).optional(),
  MCP_JWT_JWKS_URL: envUrl(['https', 'http']).optional(),
  MCP_JWT_ALGORITHM: envList(`one or more of ${[...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].join(', ')}`, (s) =>
    [...HMAC_ALGORITHMS, ...ASYMMETRIC_ALGORITHMS].includes(s),
  ).optional(),
  MCP_JWT_ISSUER: envString('the expected "iss" claim').optional(),
  MCP_JWT_AUDIENCE: envList('the expected "aud" claim (comma-separated for several)').optional(),
  MCP_JWT_CLOCK_TOLERANCE: envInt(0, 300).default(30),
  MCP_JWT_REQUIRE_EXP: envBool().default(true),
  MCP_JWT_ROLES_CLAIM: envString('a claim name, dots for nesting (e.g. realm_access.roles)').default('roles'),
  MCP_JWT_GROUPS_CLAIM: envString('a claim name, dots for nesting').default('groups'),
  MCP_API_KEYS: envSecretList(16).optional(),
  GATEHOUSE_API_KEY_PEPPER: envSecret(32).optional(),
  MCP_OAUTH_ISSUER: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_JWKS_URL: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_AUDIENCE: envList('the expected "aud" claim (comma-separated for several)').optional(),
  AUTH_TRUSTED_PROXIES: envList('a comma-separated list of IP addresses or CIDR blocks, e.g. 10.0.0.0/8', isCidr).optional(),
  MCP_SESSION_AUTH_ENABLED: envBool().default(true),
  MCP_SESSION_AUTH_REQUIRE_FOR_SESSION: envBool().optional(),
  MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS: envBool().default(true),
  ...OAUTH_SERVER_ENV,
  // Issue 14, per-user upstream OAuth (src/upstream-oauth, docs/upstream-oauth.md).
  ...UPSTREAM_OAUTH_ENV,
  ...UPSTREAM_CONNECT_ENV,

  // Issue 13, sign-in (src/login, src/config/login-config.ts, docs/oauth.md "Login").
  GATEHOUSE_LOGIN_PROVIDERS: envCustom(parseLoginProviders, true).optional(),
  MCP_OAUTH_CLIENT_ID: envString('an OAuth client id').optional(),
  MCP_OAUTH_CLIENT_SECRET: envSecret(1).optional(),
  MCP_OAUTH_AUTH_URL: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_TOKEN_URL: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_USERINFO_URL: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_CALLBACK_URL: envUrl(['https', 'http']).optional(),
  MCP_OAUTH_SCOPE: envString('space-separated OAuth scopes').optional(),
  GATEHOUSE_LOGIN_ALLOWED_DOMAINS: envList('a comma-separated list of email domains, e.g. example.com', (s) => /^@?[A-Za-z0-9.-]+\.[A-Za-z]{2,}$/.test(s)).optional(),
  GATEHOUSE_LOGIN_REQUIRE_VERIFIED_EMAIL: envBool().default(true),
  GATEHOUSE_LOGIN_GROUP_ROLES: envList('a comma-separated list of <IdP group>=<role>, e.g. gatehouse-admins=admin', (s) => GROUP_ROLE_ITEM.test(s)).optional(),
  GATEHOUSE_LOGIN_LOCAL: envBool().default(true),
  GATEHOUSE_LOGIN_MAX_FAILURES_PER_ACCOUNT: envInt(1, 1_000_000).default(5),
  GATEHOUSE_LOGIN_MAX_FAILURES_PER_ADDRESS: envInt(1, 1_000_000).default(50),
  GATEHOUSE_LOGIN_FAILURE_WINDOW: envInt(1_000, 24 * 3_600_000).default(900_000),
  GATEHOUSE_BROWSER_SESSION_TTL: envInt(60_000, 90 * 24 * 3_600_000).default(12 * 3_600_000),
  GATEHOUSE_BROWSER_SESSION_IDLE: envInt(60_000, 90 * 24 * 3_600_000).default(2 * 3_600_000),
}).superRefine((env, ctx) => {
  const strategies = env.MCP_AUTH_STRATEGY;
  refineOAuthServerEnv(env, ctx);
  const issue = (path: string, message: string) => ctx.addIssue({ code: 'custom', path: [path], message });
  if (env.MCP_AUTH_REQUIRE === true && strategies.includes('none')) {
    issue(
      'MCP_AUTH_REQUIRE',
      strategies.length === 1
        ? 'is true but MCP_AUTH_STRATEGY is only "none", which authenticates nobody; add bearer, api_key, oauth2 or trusted_header'
        : 'is true but MCP_AUTH_STRATEGY includes "none", which admits requests without credentials; drop one of them',
    );
  }
  if (strategies.includes('bearer')) {
    if (!env.MCP_JWT_SECRET && !env.MCP_JWT_JWKS_URL) issue('MCP_JWT_SECRET', 'required (or MCP_JWT_JWKS_URL) when MCP_AUTH_STRATEGY includes bearer');
    if (env.MCP_JWT_JWKS_URL && !env.MCP_JWT_AUDIENCE) issue('MCP_JWT_AUDIENCE', 'required with MCP_JWT_JWKS_URL: tokens must be meant for this gateway');
    const algorithms = env.MCP_JWT_ALGORITHM ?? [];
    if (!env.MCP_JWT_SECRET && algorithms.some((a) => HMAC_ALGORITHMS.includes(a))) {
      issue('MCP_JWT_ALGORITHM', `${algorithms.join(',')} includes an HMAC algorithm, which needs MCP_JWT_SECRET`);
    }
    if (!env.MCP_JWT_JWKS_URL && algorithms.some((a) => ASYMMETRIC_ALGORITHMS.includes(a))) {
      issue('MCP_JWT_ALGORITHM', `${algorithms.join(',')} includes a public-key algorithm, which needs MCP_JWT_JWKS_URL`);
    }
  }
  if (env.GATEHOUSE_ENCRYPTION_KEYS) {
    try {
      parseKeyRing(env.GATEHOUSE_ENCRYPTION_KEYS);
    } catch (error) {
      issue('GATEHOUSE_ENCRYPTION_KEYS', (error as Error).message.replace(/^GATEHOUSE_ENCRYPTION_KEYS: /, ''));
    }
  } else if (env.NODE_ENV === 'production') {
    issue(
      'GATEHOUSE_ENCRYPTION_KEYS',
      'required in production: the key that encrypts stored secrets, as id:base64key (generate one with: echo "k1:$(openssl rand -base64 32)")',
    );
  }
  if (strategies.includes('oauth2') && !env.MCP_OAUTH_ISSUER && !env.GATEHOUSE_OAUTH_SERVER) issue('MCP_OAUTH_ISSUER', 'required when MCP_AUTH_STRATEGY includes oauth2');
  const seedOAuth = [env.MCP_OAUTH_CLIENT_ID, env.MCP_OAUTH_AUTH_URL, env.MCP_OAUTH_TOKEN_URL, env.MCP_OAUTH_USERINFO_URL];
  if (seedOAuth.some(Boolean) && !seedOAuth.every(Boolean)) {
    issue('MCP_OAUTH_CLIENT_ID', 'MCP_OAUTH_CLIENT_ID, MCP_OAUTH_AUTH_URL, MCP_OAUTH_TOKEN_URL and MCP_OAUTH_USERINFO_URL go together (a plain OAuth2 login provider): set all four or none');
  }
  if (strategies.includes('trusted_header') && !env.AUTH_TRUSTED_PROXIES) {
    issue('AUTH_TRUSTED_PROXIES', 'required when MCP_AUTH_STRATEGY includes trusted_header: identity headers are believed only from these addresses');
  }

  // Browsers reject `Access-Control-Allow-Origin: *` on credentialed requests.
  if (env.HTTP_ENABLE_CORS && env.HTTP_CORS_CREDENTIALS && env.HTTP_CORS_ORIGINS.includes('*')) {
    ctx.addIssue({
      code: 'custom',
      path: ['HTTP_CORS_ORIGINS'],
      message: 'expected explicit origins when HTTP_CORS_CREDENTIALS=true, got "*"',
    });
  }
});

type ParsedEnv = z.output<typeof envSchema>;

/** The typed configuration the app is built from. Nothing else reads `process.env`. */
export interface AppConfig {
  env: ParsedEnv['NODE_ENV'];
  http: {
    port: number;
    host: string;
    /** The externally visible origin, no trailing slash (e.g. `https://mcp.example.com`). */
    publicUrl: string;
    requestTimeoutMs: number;
    keepAliveTimeoutMs: number;
    maxRequestBytes: number;
    /** Time allowed to receive a request body once its headers are in (ms); 0: only `requestTimeoutMs` bounds it. */
    bodyTimeoutMs: number;
    /** Deepest nesting of objects/arrays accepted in a JSON request body. */
    maxJsonDepth: number;
    trustProxy: boolean | number | string[];
    cors: { enabled: boolean; origins: string[]; methods: string[]; headers: string[]; credentials: boolean };
  };
  log: { level: ParsedEnv['LOG_LEVEL']; pretty: boolean };
  database: {
    /** `undefined` means: start the embedded PostgreSQL. */
    url: string | undefined;
    migrate: boolean;
    poolMax: number;
    /** Server-side `statement_timeout` (ms); 0: none. */
    statementTimeoutMs: number;
    /** Bound on opening a connection and on waiting for a free pooled one (ms). */
    connectTimeoutMs: number;
    /**
     * Client-side bound on waiting for a query's answer (ms); 0: none. Catches a server that
     * stopped answering, which `statement_timeout` (enforced by that server) cannot.
     */
    queryTimeoutMs: number;
    embedded: { dir: string; port: number };
    /** The change bus's LISTEN connection: a liveness query every `livenessIntervalMs`, answered within `livenessTimeoutMs`. */
    bus: { livenessIntervalMs: number; livenessTimeoutMs: number };
  };
  mcp: {
    /** Validate Host and Origin on /mcp (DNS-rebinding protection). */
    dnsRebindingProtection: boolean;
    /** Host names (no port) accepted in the Host header of /mcp requests. */
    allowedHosts: string[];
    /** Origins accepted in the Origin header of /mcp requests (absent Origin is fine). */
    allowedOrigins: string[];
    /** Answer steady-state calls (tools/call, tools/list, ping) without the SDK's per-request serving (MCP_FAST_PATH). */
    fastPath: boolean;
    sessionTimeoutMs: number;
    maxSessionsPerPrincipal: number;
    /** Open sessions opened without credentials (or by the anonymous principal of `none`) per client address. */
    maxSessionsPerAddress: number;
    /** A session unused this long (ms) may be closed to make room when a cap is reached; 0: never. */
    sessionReclaimIdleMs: number;
    sessionSweepIntervalMs: number;
    /** Legacy GET streams one session may hold open at once (per replica). */
    maxStreamsPerSession: number;
    /** Legacy GET plus `subscriptions/listen` streams one principal may hold open on a replica. */
    maxStreamsPerPrincipal: number;
    /** Entries per page of the lists Gatehouse serves (tools, prompts, resources, templates). */
    listPageSize: number;
  };
  rateLimit: {
    enabled: boolean;
    /** Fixed window length in ms (whole seconds are used: rounded up). */
    windowMs: number;
    /** Requests per window per authenticated principal, across all replicas. */
    maxRequests: number;
    /** Requests per window per client address without credentials, and failed authentications. */
    maxUnauthenticated: number;
    /** Replicas sharing the limits: each enforces ceil(max / replicas). */
    replicas: number;
    /** Per-tool limits: `<namespaced tool glob>` → calls per window per principal. */
    tools: { pattern: string; max: number }[];
  };
  policies: {
    /** The outcome when no policy matches an operation. */
    defaultEffect: 'allow' | 'deny';
  };
  upstreams: {
    /** YAML/JSON list of servers upserted at start (e.g. a mounted ConfigMap). */
    serversFile: string | undefined;
    /** Stop a stdio upstream's process after this many ms without calls; 0 keeps it running. */
    stdioIdleTtlMs: number;
    /** Per-user connections (stdio processes, HTTP sessions) this replica keeps at most. */
    poolMax: number;
    /** A per-user connection unused this long is closed. */
    poolIdleTtlMs: number;
    /** Longest message (bytes) a stdio upstream may write; a longer one is dropped and its request failed. */
    maxMessageBytes: number;
    /** /readyz waits at most this many ms for every enabled server's first connection attempt (0: no wait). */
    readyUpstreamsTimeoutMs: number;
    /** Most characters one SSE event from an HTTP upstream may buffer before it ends. */
    httpMaxEventChars: number;
    /** Most bytes one HTTP upstream response body may carry. */
    httpMaxResponseBytes: number;
    /** Progress restarts a call's timeout, up to this many ms in all; 0: progress does not extend it. */
    maxTotalTimeoutMs: number;
    /** A 2026-07-28 client has this many ms to retry an `input_required` answer before the upstream's request is refused. */
    inputRequiredTtlMs: number;
    /**
     * A retry relayed to the replica holding its parked call (ms): that replica must take it up,
     * and then keep signalling it is alive, within this bound, else the retry gets -32602.
     */
    inputRequiredRelayTimeoutMs: number;
    /** Bounds on each list walked from an upstream over all its pages: items, bytes (UTF-8 JSON). */
    listLimits: { maxItems: number; maxBytes: number };
  };
  secrets: {
    /** GATEHOUSE_ENCRYPTION_KEYS as given (validated); undefined: a development key in dataDir. */
    keys: string | undefined;
    dataDir: string;
    /** Secrets one user may store (their own, across servers; shared server secrets are not counted). */
    maxPerUser: number;
  };
  auth: {
    strategies: AuthStrategyName[];
    /** Refuse requests without credentials (subject to the session/operation split on /mcp). */
    require: boolean;
    /**
     * Start with `none` as the only strategy (every request an anonymous admin) on a HOST other
     * than loopback (MCP_AUTH_ALLOW_NONE_ON_NETWORK); refused at boot otherwise.
     */
    allowNoneOnNetwork: boolean;
    jwt: {
      secret: string | undefined;
      jwksUrl: string | undefined;
      /** Accepted `alg` values; never `none`, never HMAC with a JWKS (no key confusion). */
      algorithms: string[];
      issuer: string | undefined;
      audience: string[] | undefined;
      clockToleranceSec: number;
      /** Refuse JWTs without `exp` (bearer and oauth2). */
      requireExp: boolean;
      rolesClaim: string;
      groupsClaim: string;
    };
    /** Static keys from MCP_API_KEYS (bootstrap; admin). */
    staticApiKeys: string[];
    /** Active (unrevoked, unexpired) API keys one user — or one key-less creator — may hold. */
    maxApiKeysPerUser: number;
    /** Key for the keyed hash API keys are stored as. */
    apiKeyPepper: string;
    /** `audience`: MCP_OAUTH_AUDIENCE, accepted on every route besides the request's own resource. */
    oauth: { issuer: string | undefined; jwksUrl: string | undefined; audience: string[] };
    trustedProxies: string[];
    session: { enabled: boolean; requireForSession: boolean; requireForOperations: boolean };
  };
  /** Gatehouse as the OAuth 2.1 authorization server (docs/oauth-server.md); `enabled` false: off. */
  oauthServer: OAuthServerConfig;
  /** Per-user OAuth connections to upstream servers (docs/upstream-oauth.md). */
  upstreamOAuth: UpstreamOAuthSettings;
  /** The connect flow: links and pending authorization requests (src/upstream-connect). */
  upstreamConnect: UpstreamConnectSettings;
  shutdown: { timeoutMs: number; delayMs: number };
  /** Sign-in at identity providers and with local passwords; browser sessions (src/login). */
  login: LoginConfig;
}

/**
 * Used when GATEHOUSE_API_KEY_PEPPER is unset. Keys are 256 random bits, so their stored hashes
 * cannot be reversed either way; a pepper kept outside the database additionally makes a
 * stolen table useless for checking guesses (see docs/auth.md).
 */
const DEFAULT_API_KEY_PEPPER = 'gatehouse-api-key-v1';

function parseTrustProxy(raw: string): boolean | number | string[] {
  const v = raw.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^\d+$/.test(v)) return Number(v);
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

export function toAppConfig(e: ParsedEnv): AppConfig {
  const publicUrl = (e.PUBLIC_URL?.toString() ?? `http://localhost:${e.PORT}`).replace(/\/+$/, '');
  return {
    env: e.NODE_ENV,
    http: {
      port: e.PORT,
      host: e.HOST,
      publicUrl,
      requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT,
      keepAliveTimeoutMs: e.HTTP_KEEP_ALIVE_TIMEOUT,
      maxRequestBytes: e.HTTP_MAX_REQUEST_SIZE,
      bodyTimeoutMs: e.HTTP_BODY_TIMEOUT,
      maxJsonDepth: e.HTTP_MAX_JSON_DEPTH,
      trustProxy: parseTrustProxy(e.HTTP_TRUST_PROXY),
      cors: {
        enabled: e.HTTP_ENABLE_CORS,
        origins: e.HTTP_CORS_ORIGINS,
        methods: e.HTTP_CORS_METHODS,
        headers: e.HTTP_CORS_HEADERS,
        credentials: e.HTTP_CORS_CREDENTIALS,
      },
    },
    log: {
      level: e.LOG_LEVEL,
      pretty: (e.LOG_FORMAT ?? (e.NODE_ENV === 'development' ? 'pretty' : 'json')) === 'pretty',
    },
    database: {
      url: e.DATABASE_URL?.toString(),
      migrate: e.DB_MIGRATE,
      poolMax: e.DB_POOL_MAX,
      statementTimeoutMs: e.DB_STATEMENT_TIMEOUT,
      connectTimeoutMs: e.DB_CONNECT_TIMEOUT,
      // Unset: a little longer than statement_timeout, so the server cancels first when it can.
      queryTimeoutMs: e.DB_QUERY_TIMEOUT ?? (e.DB_STATEMENT_TIMEOUT > 0 ? e.DB_STATEMENT_TIMEOUT + 5_000 : 0),
      embedded: { dir: e.EMBEDDED_POSTGRES_DIR, port: e.EMBEDDED_POSTGRES_PORT },
      bus: { livenessIntervalMs: e.GATEHOUSE_BUS_LIVENESS_INTERVAL, livenessTimeoutMs: e.GATEHOUSE_BUS_LIVENESS_TIMEOUT },
    },
    mcp: {
      dnsRebindingProtection: e.HTTP_DNS_REBINDING_PROTECTION,
      allowedHosts: e.HTTP_ALLOWED_HOSTS ?? [...new Set([new URL(publicUrl).hostname, 'localhost', '127.0.0.1', '[::1]'])],
      allowedOrigins: [
        ...new Set([
          new URL(publicUrl).origin,
          ...e.HTTP_CORS_ORIGINS.filter((o) => o !== '*'),
          ...(e.HTTP_ALLOWED_HOSTS ? [] : [`http://localhost:${e.PORT}`, `http://127.0.0.1:${e.PORT}`]),
        ]),
      ],
      fastPath: e.MCP_FAST_PATH,
      sessionTimeoutMs: e.HTTP_SESSION_TIMEOUT,
      maxSessionsPerPrincipal: e.HTTP_MAX_CONCURRENT_SESSIONS,
      maxSessionsPerAddress: e.HTTP_MAX_SESSIONS_PER_ADDRESS ?? e.HTTP_MAX_CONCURRENT_SESSIONS,
      sessionReclaimIdleMs: e.HTTP_SESSION_RECLAIM_IDLE,
      sessionSweepIntervalMs: e.HTTP_SESSION_CLEANUP_INTERVAL,
      maxStreamsPerSession: e.MCP_MAX_STREAMS_PER_SESSION,
      maxStreamsPerPrincipal: e.MCP_MAX_STREAMS_PER_PRINCIPAL,
      listPageSize: e.MCP_LIST_PAGE_SIZE,
    },
    rateLimit: {
      enabled: e.HTTP_RATE_LIMIT_ENABLED,
      windowMs: e.HTTP_RATE_LIMIT_WINDOW,
      maxRequests: e.HTTP_RATE_LIMIT_MAX_REQUESTS,
      maxUnauthenticated: e.HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED,
      replicas: e.HTTP_RATE_LIMIT_REPLICAS,
      tools: (e.HTTP_RATE_LIMIT_TOOLS ?? []).map((item) => {
        const at = item.lastIndexOf('=');
        return { pattern: item.slice(0, at), max: Number(item.slice(at + 1)) };
      }),
    },
    policies: { defaultEffect: e.GATEHOUSE_POLICY_DEFAULT },
    upstreams: {
      serversFile: e.GATEHOUSE_SERVERS_FILE,
      stdioIdleTtlMs: e.GATEHOUSE_STDIO_IDLE_TTL,
      poolMax: e.GATEHOUSE_POOL_MAX,
      poolIdleTtlMs: e.GATEHOUSE_POOL_IDLE_TTL,
      maxMessageBytes: e.GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE,
      readyUpstreamsTimeoutMs: e.GATEHOUSE_READY_UPSTREAMS_TIMEOUT,
      httpMaxEventChars: e.GATEHOUSE_HTTP_MAX_EVENT_SIZE,
      httpMaxResponseBytes: e.GATEHOUSE_HTTP_MAX_RESPONSE_BYTES,
      maxTotalTimeoutMs: e.GATEHOUSE_UPSTREAM_MAX_TOTAL_TIMEOUT,
      inputRequiredTtlMs: e.GATEHOUSE_INPUT_REQUIRED_TTL,
      inputRequiredRelayTimeoutMs: e.GATEHOUSE_INPUT_REQUIRED_RELAY_TIMEOUT,
      listLimits: { maxItems: e.GATEHOUSE_UPSTREAM_LIST_MAX_ITEMS, maxBytes: e.GATEHOUSE_UPSTREAM_LIST_MAX_BYTES },
    },
    secrets: { keys: e.GATEHOUSE_ENCRYPTION_KEYS, dataDir: e.GATEHOUSE_DATA_DIR, maxPerUser: e.GATEHOUSE_MAX_SECRETS_PER_USER },
    auth: {
      strategies: [...new Set(e.MCP_AUTH_STRATEGY)] as AuthStrategyName[],
      require: e.MCP_AUTH_REQUIRE ?? !e.MCP_AUTH_STRATEGY.includes('none'),
      allowNoneOnNetwork: e.MCP_AUTH_ALLOW_NONE_ON_NETWORK,
      jwt: {
        secret: e.MCP_JWT_SECRET,
        jwksUrl: e.MCP_JWT_JWKS_URL?.toString(),
        algorithms: e.MCP_JWT_ALGORITHM ?? [...(e.MCP_JWT_SECRET ? HMAC_ALGORITHMS : []), ...(e.MCP_JWT_JWKS_URL ? ASYMMETRIC_ALGORITHMS : [])],
        issuer: e.MCP_JWT_ISSUER,
        audience: e.MCP_JWT_AUDIENCE,
        clockToleranceSec: e.MCP_JWT_CLOCK_TOLERANCE,
        requireExp: e.MCP_JWT_REQUIRE_EXP,
        rolesClaim: e.MCP_JWT_ROLES_CLAIM,
        groupsClaim: e.MCP_JWT_GROUPS_CLAIM,
      },
      staticApiKeys: e.MCP_API_KEYS ?? [],
      maxApiKeysPerUser: e.GATEHOUSE_MAX_API_KEYS_PER_USER,
      apiKeyPepper: e.GATEHOUSE_API_KEY_PEPPER ?? DEFAULT_API_KEY_PEPPER,
      oauth: {
        // With Gatehouse as the authorization server, the oauth2 strategy checks its own tokens.
        issuer: e.GATEHOUSE_OAUTH_SERVER ? publicUrl : e.MCP_OAUTH_ISSUER?.toString().replace(/\/+$/, ''),
        jwksUrl: e.MCP_OAUTH_JWKS_URL?.toString(),
        audience: e.MCP_OAUTH_AUDIENCE ?? [],
      },
      trustedProxies: e.AUTH_TRUSTED_PROXIES ?? [],
      session: {
        enabled: e.MCP_SESSION_AUTH_ENABLED,
        // Clients start sign-in only from a 401 at connect (the SDK's connect(), mcp-remote): when
        // credentials are required, initialize needs them too unless explicitly set otherwise.
        requireForSession: e.MCP_SESSION_AUTH_REQUIRE_FOR_SESSION ?? (e.MCP_AUTH_REQUIRE ?? !e.MCP_AUTH_STRATEGY.includes('none')),
        requireForOperations: e.MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS,
      },
    },
    oauthServer: oauthServerConfig(e, publicUrl),
    upstreamOAuth: upstreamOAuthConfig(e),
    upstreamConnect: upstreamConnectConfig(e),
    shutdown: { timeoutMs: e.SHUTDOWN_TIMEOUT, delayMs: e.SHUTDOWN_DELAY },
    login: loginConfigFrom(e),
  };
}
