import assert from 'node:assert/strict';
import { Injectable, Module, type CanActivate, type ExecutionContext } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ACCEPT, LEGACY } from '../support/mcp-raw.js';

/** A global guard registered by a module of its own (not one of the app module's): refuses requests marked `x-refuse`. */
@Injectable()
class RefuseMarked implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest<{ headers: Record<string, string | undefined> }>().headers['x-refuse'] === undefined;
  }
}

@Module({ providers: [{ provide: APP_GUARD, useClass: RefuseMarked }] })
class RefuseMarkedModule {}

/**
 * The MCP lane runs every global guard Nest would run for /mcp — also one another module
 * registers (was: only the app module's three; such a guard was skipped on POST /mcp).
 */
describe('the MCP lane and a global guard from another module', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, {}, { imports: [RefuseMarkedModule] });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('refuses a POST /mcp as Nest does for every other route', async () => {
    const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'g', version: '1' } } });
    const headers = { 'content-type': 'application/json', accept: ACCEPT };
    const refused = await fetch(`${app.url}/mcp`, { method: 'POST', headers: { ...headers, 'x-refuse': '1' }, body });
    assert.equal(refused.status, 403, await refused.text());
    const admitted = await fetch(`${app.url}/mcp`, { method: 'POST', headers, body });
    assert.equal(admitted.status, 200, await admitted.text());
    assert.equal((await fetch(`${app.url}/api/v1/servers`, { headers: { 'x-refuse': '1' } })).status, 403, 'Nest runs it on other routes');
  });
});
