import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/server';
import { ANONYMOUS_PRINCIPAL, type Principal } from '../auth/principal.js';
import type { AppConfig } from '../config/config.schema.js';
import type { AuthorizedOperation } from '../mcp/pipeline/authorized-operation.js';
import { perReplica, rateLimitHeaders, RateLimitService } from './rate-limit.service.js';
import { TOOL_RATE_LIMITED, ToolRateLimitHook } from './tool-rate-limit.hook.js';

const config = (tools: { pattern: string; max: number }[], replicas = 1) =>
  ({ rateLimit: { enabled: true, windowMs: 1_500, maxRequests: 100, maxUnauthenticated: 10, replicas, tools } }) as unknown as AppConfig;

const call = (principal: Principal, name: string) =>
  ({ operation: { kind: 'tools/call', principal, policy: { operation: 'tools/call', name } } }) as unknown as AuthorizedOperation;

describe('rate limits', () => {
  it('splits a budget across replicas, rounding up (documented arithmetic)', () => {
    assert.equal(perReplica(600, 1), 600);
    assert.equal(perReplica(600, 4), 150);
    assert.equal(perReplica(10, 3), 4);
    assert.equal(perReplica(1, 5), 1);
  });

  it('formats draft-ietf-httpapi-ratelimit-headers fields; the window rounds up to whole seconds', () => {
    const limits = new RateLimitService(config([]));
    assert.equal(limits.windowMs, 2_000);
    assert.deepEqual(rateLimitHeaders({ allowed: false, bucket: 'principal', limit: 5, remaining: 0, resetMs: 1_200, setting: 'X' }, limits.windowMs), {
      'retry-after': '2',
      'ratelimit-policy': '"principal";q=5;w=2',
      ratelimit: '"principal";r=0;t=2',
    });
  });

  it('per-tool limits (HTTP_RATE_LIMIT_TOOLS): per principal and rule, -32029 naming limit and setting', async () => {
    const hook = new ToolRateLimitHook(new RateLimitService(config([{ pattern: 'gh__create_*', max: 2 }])));
    const alice = { ...ANONYMOUS_PRINCIPAL, id: 'api_key:alice' };
    await hook.beforeCall(call(alice, 'gh__create_issue'));
    await hook.beforeCall(call(alice, 'gh__create_pr'));
    await assert.rejects(
      async () => hook.beforeCall(call(alice, 'gh__create_issue')),
      (e: unknown) =>
        e instanceof ProtocolError &&
        e.code === TOOL_RATE_LIMITED &&
        /limit is 2 per 2 s \(HTTP_RATE_LIMIT_TOOLS\)/.test(e.message) &&
        (e.data as { code: string; retryAfterSeconds: number }).code === 'rate_limited' &&
        (e.data as { retryAfterSeconds: number }).retryAfterSeconds >= 1,
    );
    // Other tools and other principals are not affected.
    assert.equal(hook.beforeCall(call(alice, 'gh__read_issue')) instanceof Promise, true);
    await hook.beforeCall(call(alice, 'gh__read_issue'));
    await hook.beforeCall(call({ ...alice, id: 'api_key:bob' }, 'gh__create_issue'));
  });

  it('does nothing (no promise) without tool rules', () => {
    const hook = new ToolRateLimitHook(new RateLimitService(config([])));
    assert.equal(hook.beforeCall(call(ANONYMOUS_PRINCIPAL, 'gh__create_issue')), undefined);
  });
});
