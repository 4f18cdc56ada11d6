import { Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { FastifyRequest } from 'fastify';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { IS_PUBLIC_KEY } from '../common/decorators/public.decorator.js';
import { AUTHENTICATED_KEY, PERMISSION_KEY } from './auth.decorators.js';
import { ANONYMOUS_PRINCIPAL, holds, type Permission, type Principal } from './principal.js';

/**
 * The one global guard, deny by default: a route is reachable only if it is `@Public()`, or
 * `@Authenticated()` (any principal), or declares `@RequiresPermission(...)` and the request's
 * principal holds that permission.
 * Authentication strategies plug in at {@link authenticate}; today only `none` exists, which
 * yields the anonymous principal (see docs/architecture.md).
 */
@Injectable()
export class AuthGuard implements CanActivate {
  constructor(private readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const targets = [context.getHandler(), context.getClass()];
    if (this.reflector.getAllAndOverride<boolean>(IS_PUBLIC_KEY, targets)) return true;
    const permission = this.reflector.getAllAndOverride<Permission | undefined>(PERMISSION_KEY, targets);
    const request = context.switchToHttp().getRequest<FastifyRequest & { principal?: Principal }>();
    if (!permission && this.reflector.getAllAndOverride<boolean>(AUTHENTICATED_KEY, targets)) {
      request.principal = this.authenticate();
      return true;
    }
    if (!permission) {
      throw new AppError(ErrorCode.Forbidden, `${request.method} ${request.routeOptions.url ?? request.url} declares no permission and is closed`);
    }
    const principal = this.authenticate();
    request.principal = principal;
    if (!holds(principal, permission)) {
      throw new AppError(ErrorCode.Forbidden, `this requires the "${permission}" permission`);
    }
    return true;
  }

  private authenticate(): Principal {
    return ANONYMOUS_PRINCIPAL;
  }
}
