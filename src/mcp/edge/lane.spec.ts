import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ForbiddenException, type ArgumentsHost, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { of } from 'rxjs';
import type { Principal } from '../../auth/principal.js';
import { McpController } from '../mcp.controller.js';
import { McpLane } from './lane.js';

const PRINCIPAL = { id: 'api_key:test' } as Principal;

/** A lane over fake guards, filter and controller, recording what each saw. */
function laneWith(guards: ((context: ExecutionContext) => ReturnType<CanActivate['canActivate']>)[], serve: () => Promise<void> = () => Promise.resolve()) {
  const seen = { contexts: [] as ExecutionContext[], caught: [] as { error: unknown; host: ArgumentsHost }[], served: [] as { scope: string; principal: Principal }[], nest: 0 };
  const lane = new McpLane({
    guards: guards.map((g) => ({
      canActivate: (context: ExecutionContext) => {
        seen.contexts.push(context);
        return g(context);
      },
    })),
    filter: { catch: (error: unknown, host: ArgumentsHost) => void seen.caught.push({ error, host }) },
    controller: {
      serve: (_req: FastifyRequest, _reply: FastifyReply, scope: string, principal: Principal) => {
        seen.served.push({ scope, principal });
        return serve();
      },
    } as unknown as McpController,
  });
  const routes = ['/mcp', '/mcp/:server'].map((url) => {
    const route = { url, method: ['GET', 'POST', 'DELETE'], handler: () => void seen.nest++ } as unknown as RouteOptions;
    lane.wrap(route);
    return route;
  });
  const call = async (method: string, url: '/mcp' | '/mcp/:server', server?: string) => {
    const request = { method, params: server === undefined ? {} : { server }, principal: PRINCIPAL, raw: { aborted: false }, socket: { destroyed: false } } as unknown as FastifyRequest;
    const reply = { sent: true, raw: { headersSent: true }, status: () => reply } as unknown as FastifyReply;
    const route = routes[url === '/mcp' ? 0 : 1];
    (route.handler as (this: unknown, req: FastifyRequest, rep: FastifyReply) => unknown).call({}, request, reply);
    await new Promise((resolve) => setImmediate(resolve));
    return { request, reply };
  };
  return { lane, seen, call };
}

describe('the MCP lane (Nest’s router steps, without the router)', () => {
  it('takes both /mcp routes, and only their POSTs with a scope; the rest goes to Nest’s handler', async () => {
    const { lane, seen, call } = laneWith([() => true]);
    assert.equal(lane.wrapped, 2);
    await call('GET', '/mcp');
    await call('DELETE', '/mcp/:server', 'everything');
    await call('POST', '/mcp/:server', '');
    assert.equal(seen.nest, 3);
    await call('POST', '/mcp');
    await call('POST', '/mcp/:server', 'everything');
    assert.equal(seen.nest, 3);
    assert.deepEqual(seen.served, [
      { scope: '', principal: PRINCIPAL },
      { scope: 'everything', principal: PRINCIPAL },
    ]);
    const other = { url: '/api/v1/me', method: 'POST', handler: () => undefined } as unknown as RouteOptions;
    const before = other.handler;
    lane.wrap(other);
    assert.equal(other.handler, before, 'other routes are left alone');
  });

  it('gives guards the context Nest’s guards consumer gives them: args, McpController, the route’s method, http', async () => {
    const { seen, call } = laneWith([() => true, () => true]);
    const { request, reply } = await call('POST', '/mcp/:server', 'x');
    const [first, second] = seen.contexts;
    assert.equal(first, second, 'one context for all guards');
    assert.deepEqual(first.getArgs(), [request, reply, undefined]);
    assert.equal(first.getClass(), McpController);
    // eslint-disable-next-line @typescript-eslint/unbound-method -- compared, not called
    assert.equal(first.getHandler(), McpController.prototype.single);
    assert.equal(first.getType(), 'http');
    seen.contexts.length = 0;
    await call('POST', '/mcp');
    // eslint-disable-next-line @typescript-eslint/unbound-method -- compared, not called
    assert.equal(seen.contexts[0].getHandler(), McpController.prototype.aggregated);
  });

  it('runs guards in order and stops at a refusal: false is Nest’s 403 ForbiddenException, rendered by the filter', async () => {
    const order: string[] = [];
    const { seen, call } = laneWith([
      () => (order.push('a'), true),
      () => (order.push('b'), Promise.resolve(false)),
      () => (order.push('c'), true),
    ]);
    const { request, reply } = await call('POST', '/mcp');
    assert.deepEqual(order, ['a', 'b']);
    assert.equal(seen.served.length, 0);
    assert.equal(seen.caught.length, 1);
    const { error, host } = seen.caught[0];
    assert.ok(error instanceof ForbiddenException);
    assert.equal(error.message, 'Forbidden resource');
    assert.equal(host.switchToHttp().getRequest(), request);
    assert.equal(host.switchToHttp().getResponse(), reply);
  });

  it('awaits promises and Observables as Nest does, and renders what a guard throws or rejects with', async () => {
    const admitted = laneWith([() => Promise.resolve(true), () => of(false, true), () => true]);
    await admitted.call('POST', '/mcp');
    assert.equal(admitted.seen.served.length, 1, 'an Observable’s last value decides');

    const thrown = new Error('401 from the auth guard');
    const sync = laneWith([() => true, () => { throw thrown; }]);
    await sync.call('POST', '/mcp');
    assert.deepEqual(sync.seen.caught.map((c) => c.error), [thrown]);
    assert.equal(sync.seen.served.length, 0);

    const rejected = laneWith([() => Promise.reject(thrown)]);
    await rejected.call('POST', '/mcp');
    assert.deepEqual(rejected.seen.caught.map((c) => c.error), [thrown]);
  });

  it('renders what serving rejects with through the filter, once', async () => {
    const failure = new Error('upstream table gone');
    const { seen, call } = laneWith([() => true], () => Promise.reject(failure));
    await call('POST', '/mcp');
    assert.deepEqual(seen.caught.map((c) => c.error), [failure]);
  });
});
