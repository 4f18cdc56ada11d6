import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ExecutionContext } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { AppError } from '../common/errors/app-error.js';
import { loadConfig } from '../config/load-config.js';
import { RequiresPermission } from './auth.decorators.js';
import { AuthGuard } from './auth.guard.js';
import type { AuthenticationService } from './authentication.service.js';
import { ANONYMOUS_PRINCIPAL, type Principal } from './principal.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

class Routes {
  @RequiresPermission('mcp')
  mcp(): void {}
  @RequiresPermission('admin:write')
  admin(): void {}
}

/** The guard over an authentication whose `principalOf` answers `answer`, and a request to the route `handler`. */
function guarded(answer: () => Principal | null | Promise<Principal | null>, handler: 'mcp' | 'admin') {
  const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key' }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const authentication = { open: false, principalOf: answer } as unknown as AuthenticationService;
  const guard = new AuthGuard(new Reflector(), authentication, result.config);
  const request: { method: string; url: string; headers: object; principal?: Principal } = { method: 'POST', url: '/mcp', headers: {} };
  const context = {
    getHandler: () => (Routes.prototype as unknown as Record<string, unknown>)[handler],
    getClass: () => Routes,
    getArgByIndex: (index: number) => (index === 0 ? request : undefined),
  } as unknown as ExecutionContext;
  return { run: () => guard.canActivate(context), request };
}

describe('AuthGuard', () => {
  const member: Principal = { ...ANONYMOUS_PRINCIPAL, id: 'api_key:k1', roles: ['member'], scopes: ['mcp'], method: 'api_key' };

  it('admits without a promise when authentication answered without one', () => {
    const { run, request } = guarded(() => member, 'mcp');
    assert.equal(run(), true);
    assert.equal(request.principal, member);
    assert.throws(guarded(() => member, 'admin').run, (e: unknown) => e instanceof AppError && e.status === 403);
    assert.throws(guarded(() => null, 'mcp').run, (e: unknown) => e instanceof AppError && e.status === 401);
  });

  it('decides the same when authentication answers with a promise', async () => {
    const { run, request } = guarded(() => Promise.resolve(member), 'mcp');
    const admitted = run();
    assert.ok(admitted instanceof Promise);
    assert.equal(await admitted, true);
    assert.equal(request.principal, member);
    await assert.rejects(Promise.resolve(guarded(() => Promise.resolve(member), 'admin').run()), (e: unknown) => e instanceof AppError && e.status === 403);
    await assert.rejects(Promise.resolve(guarded(() => Promise.resolve(null), 'mcp').run()), (e: unknown) => e instanceof AppError && e.status === 401);
  });
});
