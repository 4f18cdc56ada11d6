import { createParamDecorator, SetMetadata, type ExecutionContext } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import type { Permission, Principal } from './principal.js';

/** Metadata key: the permission a route requires (read by {@link AuthGuard}). */
export const PERMISSION_KEY = 'gatehouse:permission';

/**
 * Declares what a route (or every route of a controller) requires. A route with neither this
 * nor `@Public()` is refused: the guard denies by default, so forgetting a declaration fails
 * closed, and the route snapshot test shows it in review.
 */
export const RequiresPermission = (permission: Permission): MethodDecorator & ClassDecorator => SetMetadata(PERMISSION_KEY, permission);

/** Metadata key: the route needs a principal but no particular permission (e.g. `/me`). */
export const AUTHENTICATED_KEY = 'gatehouse:authenticated';

/** Any authenticated principal may call this route (and only for itself). */
export const Authenticated = (): MethodDecorator & ClassDecorator => SetMetadata(AUTHENTICATED_KEY, true);

/** Metadata key: the MCP endpoint, where credentials may be required per method (seed 002). */
export const MCP_ENDPOINT_KEY = 'gatehouse:mcp-endpoint';

/**
 * Marks the MCP endpoint: without credentials, `MCP_SESSION_AUTH_REQUIRE_FOR_SESSION` and
 * `MCP_SESSION_AUTH_REQUIRE_FOR_OPERATIONS` decide per JSON-RPC method whether to answer 401.
 */
export const McpEndpoint = (): ClassDecorator => SetMetadata(MCP_ENDPOINT_KEY, true);

/** The authenticated principal of the current request (set by the guard). */
export const CurrentPrincipal = createParamDecorator((_data: unknown, ctx: ExecutionContext): Principal => {
  // `switchToHttp().getRequest()` without the closures it allocates per call.
  const request = ctx.getArgByIndex<FastifyRequest & { principal?: Principal }>(0);
  if (!request.principal) throw new Error('CurrentPrincipal used on a route the auth guard did not run for');
  return request.principal;
});
