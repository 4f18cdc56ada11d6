import type { z } from 'zod';
import { envBool, envCustom, envInt, envSize } from './env-parsers.js';

/** Shortest automatic key rotation interval (ms): one hour. */
const MIN_ROTATION_MS = 3_600_000;
/** Longest: one year. */
const MAX_ROTATION_MS = 365 * 24 * 3_600_000;

/**
 * `GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL`: `off` (or `0`) or a duration in ms
 * ({@link MIN_ROTATION_MS} … {@link MAX_ROTATION_MS}); `off` is 0 in the typed config.
 */
function parseRotationInterval(raw: string): { ok: true; value: number } | { ok: false; message: string } {
  const message = `off, or an interval in ms ${MIN_ROTATION_MS}-${MAX_ROTATION_MS} (e.g. 2592000000 for 30 days)`;
  if (/^(off|0)$/i.test(raw)) return { ok: true, value: 0 };
  if (!/^\d+$/.test(raw)) return { ok: false, message };
  const n = Number(raw);
  return n >= MIN_ROTATION_MS && n <= MAX_ROTATION_MS ? { ok: true, value: n } : { ok: false, message };
}

/**
 * Settings of Gatehouse as the OAuth 2.1 authorization server (issue 13; docs/oauth-server.md).
 * Kept in their own file and spread into the one schema (config.schema.ts).
 */
export const OAUTH_SERVER_ENV = {
  GATEHOUSE_OAUTH_SERVER: envBool().default(false),
  GATEHOUSE_OAUTH_ACCESS_TOKEN_TTL: envInt(60_000, 24 * 3_600_000).default(900_000),
  GATEHOUSE_OAUTH_REFRESH_TOKEN_TTL: envInt(60_000, 365 * 24 * 3_600_000).default(30 * 24 * 3_600_000),
  GATEHOUSE_OAUTH_REFRESH_REUSE_GRACE: envInt(0, 300_000).default(10_000),
  GATEHOUSE_OAUTH_DYNAMIC_REGISTRATION: envBool().default(true),
  GATEHOUSE_OAUTH_CLIENT_METADATA_DOCUMENTS: envBool().default(true),
  GATEHOUSE_OAUTH_FETCH_ALLOW_PRIVATE: envBool().default(false),
  GATEHOUSE_OAUTH_FETCH_MAX_SIZE: envSize(512, 1024 ** 2).default(5 * 1024),
  GATEHOUSE_OAUTH_FETCH_TIMEOUT: envInt(100, 60_000).default(5_000),
  GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL: envCustom(parseRotationInterval).default(0),
};

type OAuthServerEnv = { [K in keyof typeof OAUTH_SERVER_ENV]: z.output<(typeof OAUTH_SERVER_ENV)[K]> };

/** Cross-field rules: the authorization server's tokens are checked by the `oauth2` strategy. */
export function refineOAuthServerEnv(env: OAuthServerEnv & { MCP_AUTH_STRATEGY: string[]; MCP_OAUTH_ISSUER?: URL | string }, ctx: z.RefinementCtx): void {
  if (!env.GATEHOUSE_OAUTH_SERVER) return;
  if (!env.MCP_AUTH_STRATEGY.includes('oauth2')) {
    ctx.addIssue({
      code: 'custom',
      path: ['MCP_AUTH_STRATEGY'],
      message: 'must include oauth2 when GATEHOUSE_OAUTH_SERVER=true (the oauth2 strategy checks the access tokens Gatehouse issues), e.g. MCP_AUTH_STRATEGY=oauth2,api_key',
    });
  }
  if (env.MCP_OAUTH_ISSUER) {
    ctx.addIssue({
      code: 'custom',
      path: ['MCP_OAUTH_ISSUER'],
      message: 'must be unset when GATEHOUSE_OAUTH_SERVER=true: Gatehouse is then the authorization server (unset GATEHOUSE_OAUTH_SERVER to keep an external one)',
    });
  }
}

/** The authorization server's typed settings (durations in ms, sizes in bytes). */
export interface OAuthServerConfig {
  enabled: boolean;
  /** The issuer identifier (RFC 8414 §2): PUBLIC_URL, no trailing slash. */
  issuer: string;
  accessTokenTtlMs: number;
  refreshTokenTtlMs: number;
  /** A rotated refresh token reused within this many ms of its rotation still works (concurrent refreshes). */
  refreshReuseGraceMs: number;
  dynamicRegistration: boolean;
  clientMetadataDocuments: boolean;
  /** Client ID Metadata Document fetches (src/common/http/safe-fetch.ts). */
  fetch: { allowPrivate: boolean; maxBytes: number; timeoutMs: number };
  /** Automatic signing key rotation every this many ms; 0: off (rotate with the admin endpoint). */
  keyRotationIntervalMs: number;
}

export function oauthServerConfig(e: OAuthServerEnv, publicUrl: string): OAuthServerConfig {
  return {
    enabled: e.GATEHOUSE_OAUTH_SERVER,
    issuer: publicUrl,
    accessTokenTtlMs: e.GATEHOUSE_OAUTH_ACCESS_TOKEN_TTL,
    refreshTokenTtlMs: e.GATEHOUSE_OAUTH_REFRESH_TOKEN_TTL,
    refreshReuseGraceMs: e.GATEHOUSE_OAUTH_REFRESH_REUSE_GRACE,
    dynamicRegistration: e.GATEHOUSE_OAUTH_DYNAMIC_REGISTRATION,
    clientMetadataDocuments: e.GATEHOUSE_OAUTH_CLIENT_METADATA_DOCUMENTS,
    fetch: { allowPrivate: e.GATEHOUSE_OAUTH_FETCH_ALLOW_PRIVATE, maxBytes: e.GATEHOUSE_OAUTH_FETCH_MAX_SIZE, timeoutMs: e.GATEHOUSE_OAUTH_FETCH_TIMEOUT },
    keyRotationIntervalMs: e.GATEHOUSE_OAUTH_KEY_ROTATION_INTERVAL,
  };
}
