import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { IS_PUBLIC_KEY } from '../common/decorators/public.decorator.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { AUTHENTICATED_KEY, MCP_ENDPOINT_KEY, PERMISSION_KEY } from './auth.decorators.js';
import { AuthenticationService, authError } from './authentication.service.js';
import { ANONYMOUS_PRINCIPAL, UNAUTHENTICATED_PRINCIPAL, holds, isUnauthenticated, type Permission, type Principal } from './principal.js';

/**
 * MCP methods that belong to setting up a session (seed 002's "session" half): `initialize`
 * and its `notifications/initialized`, the 2026 `server/discover`, and ending a session.
 * Everything else is an operation.
 */
const SESSION_METHODS = new Set(['initialize', 'notifications/initialized', 'server/discover']);

function isSessionSetup(request: FastifyRequest): boolean {
  if (request.method === 'DELETE') return true;
  if (request.method !== 'POST') return false;
  const body = request.body;
  const messages = Array.isArray(body) ? body : [body];
  return messages.length > 0 && messages.every((m) => typeof m === 'object' && m !== null && SESSION_METHODS.has((m as { method?: unknown }).method as string));
}

/**
 * The one global guard, deny by default: a route is reachable only if it is `@Public()`, or
 * `@Authenticated()` (any authenticated principal), or declares `@RequiresPermission(...)` and
 * the request's principal holds that permission.
 *
 * Without credentials: with `none` as the only strategy everyone is the anonymous admin
 * (local use); with `MCP_AUTH_REQUIRE=false` (or `none` beside other strategies) the MCP
 * endpoint is open to an unauthenticated principal; otherwise 401 — except that on the MCP
 * endpoint `MCP_SESSION_AUTH_REQUIRE_FOR_SESSION` / `…_FOR_OPERATIONS` decide per method.
 */
/** What a route declares about access, read once per (controller, handler) instead of per request. */
interface RouteAccess {
  isPublic: boolean;
  permission: Permission | undefined;
  anyPrincipal: boolean;
  isMcp: boolean;
}

@Injectable()
export class AuthGuard implements CanActivate {
  /** Route metadata is fixed once the app is built: four reflector lookups per request become one map read. */
  private readonly routes = new WeakMap<object, WeakMap<object, RouteAccess>>();

  constructor(
    private readonly reflector: Reflector,
    private readonly authentication: AuthenticationService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  private access(context: ExecutionContext): RouteAccess {
    const handler = context.getHandler();
    const controller = context.getClass();
    let byHandler = this.routes.get(controller);
    if (!byHandler) this.routes.set(controller, (byHandler = new WeakMap()));
    let access = byHandler.get(handler);
    if (!access) {
      const targets = [handler, controller];
      access = {
        isPublic: this.reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, targets) === true,
        permission: this.reflector.getAllAndOverride<Permission | undefined>(PERMISSION_KEY, targets),
        anyPrincipal: this.reflector.getAllAndOverride<boolean>(AUTHENTICATED_KEY, targets) === true,
        isMcp: this.reflector.getAllAndOverride<boolean>(MCP_ENDPOINT_KEY, targets) === true,
      };
      byHandler.set(handler, access);
    }
    return access;
  }

  /** Whether the request may reach its route; throws 401/403. Synchronous when authentication is (see {@link AuthenticationService.principalOf}). */
  canActivate(context: ExecutionContext): boolean | Promise<boolean> {
    const { isPublic, permission, anyPrincipal, isMcp } = this.access(context);
    if (isPublic) return true;
    // The HTTP request (what `switchToHttp().getRequest()` returns, without the three closures it allocates per call).
    const request = context.getArgByIndex<FastifyRequest & { principal?: Principal }>(0);
    if (!permission && !anyPrincipal) {
      throw new AppError(ErrorCode.Forbidden, `${request.method} ${request.routeOptions.url ?? request.url} declares no permission and is closed`);
    }
    const found = this.authentication.principalOf(request);
    return found instanceof Promise ? found.then((principal) => this.admit(request, principal, permission, isMcp)) : this.admit(request, found, permission, isMcp);
  }

  /** Sets the request's principal (`found`, or who a request without credentials is) and checks `permission`; throws 401/403. */
  private admit(request: FastifyRequest & { principal?: Principal }, found: Principal | null, permission: Permission | undefined, isMcp: boolean): true {
    const principal = found ?? this.withoutCredentials(request, isMcp);
    request.principal = principal;
    if (!permission) {
      if (isUnauthenticated(principal)) throw this.missing(request);
      return true;
    }
    if (!holds(principal, permission)) {
      if (isUnauthenticated(principal)) throw this.missing(request);
      const message = `this requires the "${permission}" permission, which ${principal.displayName} does not hold`;
      if (principal.method === 'none') throw new AppError(ErrorCode.Forbidden, message);
      throw authError(this.config, request, 403, message, { error: 'insufficient_scope', description: `requires ${permission}` });
    }
    return true;
  }

  private withoutCredentials(request: FastifyRequest, isMcp: boolean): Principal {
    if (this.authentication.open) return ANONYMOUS_PRINCIPAL;
    const auth = this.config.auth;
    if (!auth.require) return UNAUTHENTICATED_PRINCIPAL;
    if (isMcp && auth.session.enabled) {
      const required = isSessionSetup(request) ? auth.session.requireForSession : auth.session.requireForOperations;
      if (!required) return UNAUTHENTICATED_PRINCIPAL;
    }
    throw this.missing(request);
  }

  private missing(request: FastifyRequest): AppError {
    const strategies = this.config.auth.strategies;
    const keysOnly = strategies.includes('api_key') && !strategies.includes('oauth2') && !strategies.includes('bearer');
    return authError(
      this.config,
      request,
      401,
      keysOnly
        ? 'Unauthorized: this endpoint needs an API key; send it in the X-API-Key header (or as Authorization: Bearer <key>)'
        : 'Unauthorized: this endpoint needs credentials (Authorization: Bearer <token> or X-API-Key)',
    );
  }
}
