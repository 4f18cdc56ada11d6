import { Inject, Injectable } from '@nestjs/common';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { globToRegExp } from '../upstreams/catalog.js';

/** Which budget a request was charged to; names the setting in errors and the `RateLimit` policy name. */
export type RateLimitBucket = 'principal' | 'address' | 'tool';

/** Outcome of charging one request: allowed, or refused with when to retry. */
export interface RateLimitDecision {
  allowed: boolean;
  bucket: RateLimitBucket;
  /** This replica's share of the budget per window (after dividing by HTTP_RATE_LIMIT_REPLICAS). */
  limit: number;
  remaining: number;
  /** ms until the window resets. */
  resetMs: number;
  /** The environment variable that sets this budget. */
  setting: string;
}

const SETTING: Record<RateLimitBucket, string> = {
  principal: 'HTTP_RATE_LIMIT_MAX_REQUESTS',
  address: 'HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED',
  tool: 'HTTP_RATE_LIMIT_TOOLS',
};

/**
 * Response headers of a rate-limited answer (IETF draft-ietf-httpapi-ratelimit-headers, §3–4,
 * structured fields): `RateLimit-Policy: "<bucket>";q=<quota>;w=<window s>`,
 * `RateLimit: "<bucket>";r=<remaining>;t=<s until reset>`, and `Retry-After: <s>` (RFC 9110
 * §10.2.3). Seconds are rounded up, never 0.
 */
export function rateLimitHeaders(decision: RateLimitDecision, windowMs: number): Record<string, string> {
  const reset = Math.max(1, Math.ceil(decision.resetMs / 1000));
  return {
    'retry-after': String(reset),
    'ratelimit-policy': `"${decision.bucket}";q=${decision.limit};w=${Math.ceil(windowMs / 1000)}`,
    ratelimit: `"${decision.bucket}";r=${decision.remaining};t=${reset}`,
  };
}

/** The client-facing message of a refusal: the budget, the window and the setting that sets it. */
export function rateLimitMessage(decision: RateLimitDecision, windowMs: number, what = 'requests'): string {
  return `Too many ${what}: the limit is ${decision.limit} per ${Math.ceil(windowMs / 1000)} s (${decision.setting}); retry after ${Math.max(1, Math.ceil(decision.resetMs / 1000))} s`;
}

/** This replica's share of a budget shared by `replicas` replicas: ceil(max / replicas), at least 1. */
export const perReplica = (max: number, replicas: number) => Math.max(1, Math.ceil(max / replicas));

/**
 * Fixed-window request budgets (`rate-limiter-flexible`'s in-memory limiter) for
 * HTTP_RATE_LIMIT_*:
 *
 * - `principal`: per authenticated principal id (`HTTP_RATE_LIMIT_MAX_REQUESTS`). The
 *   anonymous principal of `MCP_AUTH_STRATEGY=none` is everyone, so it is counted per client
 *   address instead, against the same budget.
 * - `address`: per client address (`request.ip`, so `HTTP_TRUST_PROXY` decides which address
 *   that is) for requests without credentials and for failed authentications
 *   (`HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED`).
 * - `tool`: per principal and HTTP_RATE_LIMIT_TOOLS rule, for `tools/call` of a namespaced tool
 *   name matching the rule's glob.
 *
 * Across replicas without a shared store: each replica enforces ceil(max / replicas)
 * (HTTP_RATE_LIMIT_REPLICAS), so a load balancer that spreads a client's requests evenly gives
 * it at most `max` (rounded up to a multiple of the replica count) per window in total; with
 * sticky routing a client gets only its replica's share. Counters live in memory: a restart
 * resets them. Window length is HTTP_RATE_LIMIT_WINDOW rounded up to whole seconds.
 */
@Injectable()
export class RateLimitService {
  readonly enabled: boolean;
  readonly windowMs: number;
  private readonly principals: RateLimiterMemory;
  private readonly addresses: RateLimiterMemory;
  private readonly tools: { pattern: RegExp; limiter: RateLimiterMemory }[];

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    const rl = config.rateLimit;
    this.enabled = rl.enabled;
    const duration = Math.ceil(rl.windowMs / 1000);
    this.windowMs = duration * 1000;
    this.principals = new RateLimiterMemory({ keyPrefix: 'p', points: perReplica(rl.maxRequests, rl.replicas), duration });
    this.addresses = new RateLimiterMemory({ keyPrefix: 'a', points: perReplica(rl.maxUnauthenticated, rl.replicas), duration });
    this.tools = rl.tools.map((t, i) => ({
      pattern: globToRegExp(t.pattern),
      limiter: new RateLimiterMemory({ keyPrefix: `t${i}`, points: perReplica(t.max, rl.replicas), duration }),
    }));
  }

  /** Whether any per-tool rule exists (the MCP hook does nothing otherwise). */
  get hasToolRules(): boolean {
    return this.enabled && this.tools.length > 0;
  }

  /** Charges one request of an authenticated principal (`key`: principal id, or `none:<address>`). */
  chargePrincipal(key: string): Promise<RateLimitDecision> {
    return this.charge(this.principals, 'principal', key);
  }

  /** Charges one request without credentials, or one failed authentication, to `address`. */
  chargeAddress(address: string): Promise<RateLimitDecision> {
    return this.charge(this.addresses, 'address', address);
  }

  /**
   * Whether `address` has already used up its budget for requests without credentials and
   * failed authentications (checked before authenticating, so a key spray is cut off before
   * any credential lookup); undefined when it has not.
   */
  async addressExhausted(address: string): Promise<RateLimitDecision | undefined> {
    const res = await this.addresses.get(address);
    if (!res || res.remainingPoints > 0 || res.consumedPoints < this.addresses.points) return undefined;
    return this.decision('address', this.addresses.points, res, false);
  }

  /** Charges a `tools/call` of `tool` (namespaced) by `principal` to the first matching HTTP_RATE_LIMIT_TOOLS rule; undefined when none matches. */
  async chargeTool(principal: string, tool: string): Promise<RateLimitDecision | undefined> {
    const rule = this.tools.find((t) => t.pattern.test(tool));
    if (!rule) return undefined;
    return this.charge(rule.limiter, 'tool', principal);
  }

  private async charge(limiter: RateLimiterMemory, bucket: RateLimitBucket, key: string): Promise<RateLimitDecision> {
    try {
      return this.decision(bucket, limiter.points, await limiter.consume(key), true);
    } catch (refusal) {
      if (refusal instanceof RateLimiterRes) return this.decision(bucket, limiter.points, refusal, false);
      throw refusal;
    }
  }

  private decision(bucket: RateLimitBucket, limit: number, res: RateLimiterRes, allowed: boolean): RateLimitDecision {
    return { allowed, bucket, limit, remaining: Math.max(0, res.remainingPoints), resetMs: res.msBeforeNext, setting: SETTING[bucket] };
  }
}
