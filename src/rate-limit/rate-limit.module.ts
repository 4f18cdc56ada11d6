import { Module } from '@nestjs/common';
import { RateLimitAddressGuard, RateLimitPrincipalGuard } from './rate-limit.guard.js';
import { RateLimitService } from './rate-limit.service.js';
import { ToolRateLimitHook } from './tool-rate-limit.hook.js';

/**
 * Request rate limits (HTTP_RATE_LIMIT_*): the budgets ({@link RateLimitService}), the two
 * global guards around authentication (registered as `APP_GUARD`s by the app module, in order:
 * address guard, `AuthGuard`, principal guard) and the per-tool MCP operation hook.
 */
@Module({
  providers: [RateLimitService, RateLimitAddressGuard, RateLimitPrincipalGuard, ToolRateLimitHook],
  exports: [RateLimitService, RateLimitAddressGuard, RateLimitPrincipalGuard],
})
export class RateLimitModule {}
