import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { Controller, Get, Module, RequestMethod } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants.js';
import { ModulesContainer } from '@nestjs/core';
import { AUTHENTICATED_KEY, PERMISSION_KEY } from '../../src/auth/auth.decorators.js';
import { ANONYMOUS_PRINCIPAL, holds } from '../../src/auth/principal.js';
import { IS_PUBLIC_KEY } from '../../src/common/decorators/public.decorator.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const SNAPSHOT = 'test/snapshots/routes.txt';

/** A controller that forgot to declare who may call it. */
@Controller('test-undeclared')
class UndeclaredController {
  @Get()
  open(): { reached: true } {
    return { reached: true };
  }
}

@Module({ controllers: [UndeclaredController] })
class UndeclaredModule {}

const join = (...parts: (string | undefined)[]) => `/${parts.filter((p) => p && p !== '/').map((p) => p!.replace(/^\/|\/$/g, '')).filter(Boolean).join('/')}`;

describe('who can reach what', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {}, { imports: [UndeclaredModule] });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('matches the route permission snapshot', () => {
    // A diff in this snapshot changes who can reach an endpoint: review it as a permission
    // change. Regenerate with UPDATE_SNAPSHOTS=1 npm test.
    const lines: string[] = [];
    for (const module of app.app.get(ModulesContainer).values()) {
      for (const wrapper of module.controllers.values()) {
        const type = wrapper.metatype as (new (...args: unknown[]) => unknown) | null;
        if (!type || type === UndeclaredController) continue;
        const base = Reflect.getMetadata(PATH_METADATA, type) as string | undefined;
        for (const name of Object.getOwnPropertyNames(type.prototype)) {
          const handler = (type.prototype as Record<string, unknown>)[name];
          if (name === 'constructor' || typeof handler !== 'function') continue;
          const method = Reflect.getMetadata(METHOD_METADATA, handler) as RequestMethod | undefined;
          if (method === undefined) continue;
          const path = join(base, Reflect.getMetadata(PATH_METADATA, handler) as string | undefined);
          const isPublic = (Reflect.getMetadata(IS_PUBLIC_KEY, handler) ?? Reflect.getMetadata(IS_PUBLIC_KEY, type)) as boolean | undefined;
          const permission = (Reflect.getMetadata(PERMISSION_KEY, handler) ?? Reflect.getMetadata(PERMISSION_KEY, type)) as string | undefined;
          const authenticated = (Reflect.getMetadata(AUTHENTICATED_KEY, handler) ?? Reflect.getMetadata(AUTHENTICATED_KEY, type)) as boolean | undefined;
          const requires = isPublic ? 'public' : (permission ?? (authenticated ? 'authenticated' : 'CLOSED (no permission declared)'));
          lines.push(`${RequestMethod[method].padEnd(6)} ${path.padEnd(40)} ${requires}`);
        }
      }
    }
    const actual = `${lines.sort().join('\n')}\n`;
    if (process.env.UPDATE_SNAPSHOTS === '1') writeFileSync(SNAPSHOT, actual);
    assert.ok(existsSync(SNAPSHOT), `${SNAPSHOT} is missing: UPDATE_SNAPSHOTS=1 npm test writes it`);
    assert.equal(actual, readFileSync(SNAPSHOT, 'utf8'), `routes changed; review, then UPDATE_SNAPSHOTS=1 npm test (${SNAPSHOT})`);
  });

  it('denies a route that declares no permission (deny by default)', async () => {
    const res = await fetch(`${app.url}/test-undeclared`);
    assert.equal(res.status, 403);
    const body = (await res.json()) as { error: { code: string; message: string } };
    assert.equal(body.error.code, 'forbidden');
    assert.match(body.error.message, /declares no permission and is closed/);
  });

  it('GET /api/v1/me shows the calling principal (strategy none: the anonymous one)', async () => {
    const res = await fetch(`${app.url}/api/v1/me`);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), { ...ANONYMOUS_PRINCIPAL });
  });

  it('admin:write implies admin:read but not servers:write; the anonymous principal of strategy none holds every permission', () => {
    const writer = { ...ANONYMOUS_PRINCIPAL, scopes: ['admin:write'] };
    assert.equal(holds(writer, 'admin:read'), true);
    assert.equal(holds(writer, 'mcp'), false);
    assert.equal(holds(writer, 'servers:write'), false);
    assert.equal(holds({ ...ANONYMOUS_PRINCIPAL, scopes: ['servers:write'] }, 'admin:write'), false);
    assert.equal(holds({ ...ANONYMOUS_PRINCIPAL, scopes: ['admin:read'] }, 'admin:write'), false);
    for (const p of ['mcp', 'admin:read', 'admin:write', 'servers:write'] as const) assert.equal(holds(ANONYMOUS_PRINCIPAL, p), true);
  });
});
