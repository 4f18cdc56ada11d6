import type { z } from 'zod';
import { envBool, envInt, envSize } from './env-parsers.js';

/**
 * Settings of per-user upstream OAuth connections (issue 14; docs/upstream-oauth.md). Kept in
 * their own file and spread into the one schema (config.schema.ts).
 */
export const UPSTREAM_OAUTH_ENV = {
  /** Refresh an upstream access token this many ms before it expires (default 60 s). */
  GATEHOUSE_UPSTREAM_OAUTH_REFRESH_SKEW: envInt(0, 3_600_000).default(60_000),
  /** Fetches to authorization servers (token, revocation, metadata) may reach private addresses and plain http (development only). */
  GATEHOUSE_UPSTREAM_OAUTH_FETCH_ALLOW_PRIVATE: envBool().default(false),
  GATEHOUSE_UPSTREAM_OAUTH_FETCH_MAX_SIZE: envSize(1024, 1024 ** 2).default(64 * 1024),
  GATEHOUSE_UPSTREAM_OAUTH_FETCH_TIMEOUT: envInt(100, 60_000).default(10_000),
};

type UpstreamOAuthEnv = { [K in keyof typeof UPSTREAM_OAUTH_ENV]: z.output<(typeof UPSTREAM_OAUTH_ENV)[K]> };

/** Typed settings of upstream OAuth (durations in ms, sizes in bytes). */
export interface UpstreamOAuthSettings {
  refreshSkewMs: number;
  /** Fetches to authorization servers: SSRF-safe client limits (src/common/http/safe-fetch.ts). */
  fetch: { allowPrivate: boolean; maxBytes: number; timeoutMs: number };
}

export function upstreamOAuthConfig(e: UpstreamOAuthEnv): UpstreamOAuthSettings {
  return {
    refreshSkewMs: e.GATEHOUSE_UPSTREAM_OAUTH_REFRESH_SKEW,
    fetch: { allowPrivate: e.GATEHOUSE_UPSTREAM_OAUTH_FETCH_ALLOW_PRIVATE, maxBytes: e.GATEHOUSE_UPSTREAM_OAUTH_FETCH_MAX_SIZE, timeoutMs: e.GATEHOUSE_UPSTREAM_OAUTH_FETCH_TIMEOUT },
  };
}
