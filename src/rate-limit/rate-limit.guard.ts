import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { IS_PUBLIC_KEY } from '../common/decorators/public.decorator.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { isUnauthenticated, type Principal } from '../auth/principal.js';
import { rateLimitHeaders, rateLimitMessage, RateLimitService, type RateLimitDecision } from './rate-limit.service.js';

/** The 429 for a refused request: `too_many_requests`, Retry-After and RateLimit headers, details naming limit and setting. */
export function rateLimited(decision: RateLimitDecision, windowMs: number): AppError {
  return new AppError(ErrorCode.TooManyRequests, rateLimitMessage(decision, windowMs), {
    headers: rateLimitHeaders(decision, windowMs),
    details: { limit: decision.limit, windowSeconds: Math.ceil(windowMs / 1000), setting: decision.setting },
  });
}

const isPublic = (reflector: Reflector, context: ExecutionContext) =>
  reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, [context.getHandler(), context.getClass()]) === true;

/**
 * Global guard that runs **before** authentication (registered ahead of `AuthGuard`): a client
 * address that has used up its budget for unauthenticated requests and failed authentications
 * (HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED) gets 429 without any credential being looked up; and
 * every answer 401 on a non-public route is charged to the address once it is written.
 * Public routes (health, readiness, metadata) are never limited.
 */
@Injectable()
export class RateLimitAddressGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly limits: RateLimitService,
  ) {}

  /** Synchronous (no promise for Nest to await) when limits are off or the route is public. */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (!this.limits.enabled || isPublic(this.reflector, context)) return true;
    return this.check(context);
  }

  private async check(context: ExecutionContext): Promise<boolean> {
    // `switchToHttp().getRequest()` / `getResponse()` without the closures it allocates per call.
    const request = context.getArgByIndex<FastifyRequest>(0);
    const exhausted = await this.limits.addressExhausted(request.ip);
    if (exhausted) throw rateLimited(exhausted, this.limits.windowMs);
    const raw = context.getArgByIndex<FastifyReply>(1).raw;
    raw.once('finish', () => {
      if (raw.statusCode === 401) void this.limits.chargeAddress(request.ip).catch(() => undefined);
    });
    return true;
  }
}

/**
 * Global guard that runs **after** authentication (registered behind `AuthGuard`), charging
 * each request to its budget: an authenticated principal's (HTTP_RATE_LIMIT_MAX_REQUESTS), the
 * anonymous `none` principal's per client address (same budget), or — without credentials —
 * the client address's (HTTP_RATE_LIMIT_MAX_UNAUTHENTICATED). Over budget: 429 with
 * `Retry-After`, `RateLimit` and `RateLimit-Policy` (a JSON-RPC error body on /mcp, the error
 * envelope elsewhere — the exception filter picks).
 */
@Injectable()
export class RateLimitPrincipalGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly limits: RateLimitService,
  ) {}

  /** Synchronous (no promise for Nest to await) when limits are off, the route is public or nobody was authenticated. */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    if (!this.limits.enabled || isPublic(this.reflector, context)) return true;
    const request = context.getArgByIndex<FastifyRequest & { principal?: Principal }>(0);
    const principal = request.principal;
    if (!principal) return true;
    return this.charge(request, principal);
  }

  private async charge(request: FastifyRequest, principal: Principal): Promise<boolean> {
    const decision = isUnauthenticated(principal)
      ? await this.limits.chargeAddress(request.ip)
      : await this.limits.chargePrincipal(principal.method === 'none' ? `none:${request.ip}` : principal.id);
    if (!decision.allowed) throw rateLimited(decision, this.limits.windowMs);
    return true;
  }
}
