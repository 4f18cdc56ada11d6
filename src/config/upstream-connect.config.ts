import type { z } from 'zod';
import { envInt } from './env-parsers.js';

/**
 * Settings of the connect flow (issue 14: how a user obtains an upstream's OAuth token in the
 * browser; docs/upstream-oauth.md "Connecting an account"). Kept in their own file and spread
 * into the one schema (config.schema.ts).
 */
export const UPSTREAM_CONNECT_ENV = {
  /** How long a connect link handed to an MCP client stays valid (ms, default 1 h). */
  GATEHOUSE_UPSTREAM_CONNECT_LINK_TTL: envInt(60_000, 7 * 86_400_000).default(3_600_000),
  /** How long an authorization request at an upstream's authorization server may take before its callback is refused (ms, default 10 min). */
  GATEHOUSE_UPSTREAM_CONNECT_FLOW_TTL: envInt(30_000, 3_600_000).default(600_000),
};

type UpstreamConnectEnv = { [K in keyof typeof UPSTREAM_CONNECT_ENV]: z.output<(typeof UPSTREAM_CONNECT_ENV)[K]> };

/** Typed settings of the connect flow (durations in ms). */
export interface UpstreamConnectSettings {
  linkTtlMs: number;
  flowTtlMs: number;
}

/** The connect flow's settings from the parsed environment. */
export function upstreamConnectConfig(e: UpstreamConnectEnv): UpstreamConnectSettings {
  return { linkTtlMs: e.GATEHOUSE_UPSTREAM_CONNECT_LINK_TTL, flowTtlMs: e.GATEHOUSE_UPSTREAM_CONNECT_FLOW_TTL };
}
