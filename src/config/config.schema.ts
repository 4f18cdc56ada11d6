import { z } from 'zod';
import { envBool, envEnum, envInt, envList, envSize, envString, envUrl } from './env-parsers.js';

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
  HTTP_SESSION_TIMEOUT: envInt(1_000, 30 * 24 * 3_600_000).default(1_800_000),
  HTTP_MAX_CONCURRENT_SESSIONS: envInt(1, 1_000_000).default(100),
  HTTP_SESSION_CLEANUP_INTERVAL: envInt(1_000, 24 * 3_600_000).default(60_000),

  DATABASE_URL: envUrl(['postgres', 'postgresql']).optional(),
  DB_MIGRATE: envBool().default(true),
  DB_POOL_MAX: envInt(1, 1000).default(10),
  DB_STATEMENT_TIMEOUT: envInt(0, 3_600_000).default(30_000),
  EMBEDDED_POSTGRES_DIR: envString('a directory path').default('./.data/postgres'),
  EMBEDDED_POSTGRES_PORT: envInt(1, 65535).default(54329),

  GATEHOUSE_SERVERS_FILE: envString('a path to a YAML or JSON file').optional(),
  GATEHOUSE_POLICY_DEFAULT: envEnum(['allow', 'deny'] as const).default('allow'),
  GATEHOUSE_STDIO_IDLE_TTL: envInt(0, 7 * 24 * 3_600_000).default(0),

  SHUTDOWN_TIMEOUT: envInt(0, 600_000).default(25_000),
  SHUTDOWN_DELAY: envInt(0, 600_000).default(0),
}).superRefine((env, ctx) => {
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
    trustProxy: boolean | number | string[];
    cors: { enabled: boolean; origins: string[]; methods: string[]; headers: string[]; credentials: boolean };
  };
  log: { level: ParsedEnv['LOG_LEVEL']; pretty: boolean };
  database: {
    /** `undefined` means: start the embedded PostgreSQL. */
    url: string | undefined;
    migrate: boolean;
    poolMax: number;
    statementTimeoutMs: number;
    embedded: { dir: string; port: number };
  };
  mcp: {
    /** Validate Host and Origin on /mcp (DNS-rebinding protection). */
    dnsRebindingProtection: boolean;
    /** Host names (no port) accepted in the Host header of /mcp requests. */
    allowedHosts: string[];
    /** Origins accepted in the Origin header of /mcp requests (absent Origin is fine). */
    allowedOrigins: string[];
    sessionTimeoutMs: number;
    maxSessionsPerPrincipal: number;
    sessionSweepIntervalMs: number;
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
  };
  shutdown: { timeoutMs: number; delayMs: number };
}

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
      embedded: { dir: e.EMBEDDED_POSTGRES_DIR, port: e.EMBEDDED_POSTGRES_PORT },
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
      sessionTimeoutMs: e.HTTP_SESSION_TIMEOUT,
      maxSessionsPerPrincipal: e.HTTP_MAX_CONCURRENT_SESSIONS,
      sessionSweepIntervalMs: e.HTTP_SESSION_CLEANUP_INTERVAL,
    },
    policies: { defaultEffect: e.GATEHOUSE_POLICY_DEFAULT },
    upstreams: { serversFile: e.GATEHOUSE_SERVERS_FILE, stdioIdleTtlMs: e.GATEHOUSE_STDIO_IDLE_TTL },
    shutdown: { timeoutMs: e.SHUTDOWN_TIMEOUT, delayMs: e.SHUTDOWN_DELAY },
  };
}
