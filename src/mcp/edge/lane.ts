import { ForbiddenException, Module, type CanActivate, type ExceptionFilter, type INestApplicationContext, type Type } from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA, GUARDS_METADATA, INTERCEPTORS_METADATA, PIPES_METADATA } from '@nestjs/common/constants.js';
import { ApplicationConfig } from '@nestjs/core';
import { FORBIDDEN_MESSAGE } from '@nestjs/core/guards/index.js';
import { ExecutionContextHost } from '@nestjs/core/helpers/execution-context-host.js';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify';
import { isObservable, lastValueFrom } from 'rxjs';
import type { Principal } from '../../auth/principal.js';
import { McpController } from '../mcp.controller.js';

/** Provider token whose presence (any value) turns the lane off: tests compare both ways (see {@link McpLaneOffModule}). */
export const MCP_LANE_OFF = Symbol('MCP_LANE_OFF');

/**
 * Import into the app (`startGatehouse(config, { imports: [McpLaneOffModule] })`) to serve
 * every `/mcp` POST through Nest's router, as before the lane: the differential tests' "off".
 * Not a setting: production always takes the lane.
 */
@Module({ providers: [{ provide: MCP_LANE_OFF, useValue: true }], exports: [MCP_LANE_OFF] })
export class McpLaneOffModule {}

/** What the lane runs, in Nest's order: the global guards, the global exception filter, the controller. */
export interface McpLaneParts {
  /** The application's global guards (every `APP_GUARD` instance, Nest's list), in the order Nest runs them. */
  guards: readonly CanActivate[];
  /** The application's one global exception filter (`APP_FILTER`), catching everything. */
  filter: ExceptionFilter;
  controller: McpController;
}

type LaneRequest = FastifyRequest<{ Params: { server?: string } }> & { principal?: Principal };

/** The Nest handlers of the two routes, as Nest gives them to guards (`context.getHandler()`): the prototype methods. */
/* eslint-disable @typescript-eslint/unbound-method -- compared and passed as metadata targets, never called unbound */
const AGGREGATED = McpController.prototype.aggregated;
const SINGLE = McpController.prototype.single;
/* eslint-enable @typescript-eslint/unbound-method */
/** A route's handler as guards see it (a metadata target). */
type RouteHandler = (...args: never[]) => unknown;

/**
 * Serves `POST /mcp` and `POST /mcp/<server>` without Nest's router (router-execution-context,
 * guards consumer, param factories, interceptors consumer, router proxy: ~3–5 KB allocated and
 * several µs per call), with the same code Nest would run:
 *
 * 1. the same global guard instances, in the same order, on one `ExecutionContextHost` made as
 *    Nest's guards consumer makes it (`[request, reply, next]`, `McpController`, the route's
 *    handler method), so guards read the same Reflector metadata; a guard answering false is
 *    Nest's `ForbiddenException('Forbidden resource')`, a value that is a promise or an
 *    Observable is awaited as Nest's guards consumer awaits it;
 * 2. Nest's default status for a POST (201) set as Nest sets it before its handler;
 * 3. {@link McpController.serve} with the principal the auth guard set and the `server` param;
 * 4. anything thrown or rejected by 1–3 rendered by the same exception filter instance through
 *    `filter.catch(error, host)` with a host made as Nest's router proxy makes it.
 *
 * It takes the place of Nest's handler in the Fastify routes Nest registers for McpController
 * ({@link wrap}, from an `onRoute` hook), so every Fastify hook — `onRequest` (logging scope,
 * request id, Host/Origin, input limits, CORS), `preParsing`, body parsing, `preValidation`,
 * `preHandler` — has run exactly as for Nest's handler, and a request the lane takes never
 * reaches Nest's. Everything else — other methods (GET streams, DELETE; OPTIONS is CORS's or
 * Fastify's), a `/mcp/<server>` with an empty parameter (Nest's adapter answers 404 for it) —
 * goes to Nest's handler unchanged.
 */
export class McpLane {
  /** How many Fastify routes the lane took over (two: `/mcp`, `/mcp/:server`). */
  wrapped = 0;

  constructor(private readonly parts: McpLaneParts) {}

  /**
   * Wraps the handler of a Fastify route Nest registers for McpController (`onRoute`): POSTs go
   * through the lane, the rest to Nest's handler. Routes of other paths are left alone.
   */
  wrap(route: RouteOptions): void {
    const single = route.url === '/mcp/:server';
    if (route.url !== '/mcp' && !single) return;
    if (!(Array.isArray(route.method) ? route.method : [route.method]).includes('POST')) return;
    const nest = route.handler;
    const handler = single ? SINGLE : AGGREGATED;
    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the route handler's own `this` is Fastify's
    const lane = this;
    route.handler = function mcpLane(this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) {
      if (request.method !== 'POST') return nest.call(this, request, reply);
      let scope = '';
      if (single) {
        scope = (request as LaneRequest).params.server ?? '';
        if (scope === '') return nest.call(this, request, reply);
      }
      lane.serve(request as LaneRequest, reply, handler, scope);
      // undefined: Fastify leaves the reply to us, as it does once a handler has answered.
      return undefined;
    };
    this.wrapped++;
  }

  /** Serves one POST the lane took (answers on `reply`; never throws). */
  serve(request: LaneRequest, reply: FastifyReply, handler: RouteHandler, scope: string): void {
    const args = [request, reply, undefined];
    const context = new ExecutionContextHost(args, McpController, handler);
    context.setType('http');
    try {
      const pending = this.activate(context, 0);
      if (pending === undefined) this.handle(request, reply, scope, args);
      else pending.then(() => this.handle(request, reply, scope, args), (error: unknown) => this.fail(error, args, reply));
    } catch (error) {
      this.fail(error, args, reply);
    }
  }

  /** Runs the guards from `index` on: undefined when all admitted synchronously, else a promise of their admission; throws/rejects what a guard throws, or Nest's 403 for a refusal. */
  private activate(context: ExecutionContextHost, index: number): Promise<void> | undefined {
    const guards = this.parts.guards;
    for (let i = index; i < guards.length; i++) {
      const result = guards[i].canActivate(context);
      if (typeof result === 'boolean') {
        if (!result) throw new ForbiddenException(FORBIDDEN_MESSAGE);
        continue;
      }
      // As Nest's GuardsConsumer.pickResult: await it; an Observable's last value decides.
      return Promise.resolve(result)
        .then((value: unknown) => (isObservable(value) ? lastValueFrom(value) : value))
        .then((admitted) => {
          if (!admitted) throw new ForbiddenException(FORBIDDEN_MESSAGE);
          return this.activate(context, i + 1);
        });
    }
    return undefined;
  }

  private handle(request: LaneRequest, reply: FastifyReply, scope: string, args: unknown[]): void {
    // What Nest's router does between the guards and the handler (201 for POST).
    void reply.status(201);
    const principal = request.principal;
    let served: Promise<void>;
    try {
      // @CurrentPrincipal() throws this where the guard did not set one.
      if (!principal) throw new Error('CurrentPrincipal used on a route the auth guard did not run for');
      served = this.parts.controller.serve(request, reply, scope, principal);
    } catch (error) {
      this.fail(error, args, reply);
      return;
    }
    served.then(
      () => settle(request, reply),
      (error: unknown) => this.fail(error, args, reply),
    );
  }

  /** Nest's router proxy: the exception filter renders it; what the filter throws goes to Fastify, as a rejected Nest handler would. */
  private fail(error: unknown, args: unknown[], reply: FastifyReply): void {
    try {
      this.parts.filter.catch(error, new ExecutionContextHost(args));
    } catch (filterError) {
      void reply.send(filterError);
    }
  }
}

/**
 * What Fastify does when a route handler's promise (Nest's, resolving to undefined) settles
 * with nothing sent: an empty answer, unless the reply was hijacked or sent or the client left
 * (fastify/lib/wrap-thenable.js). McpController always answers; this keeps the lane's end the
 * same as Nest's should it not.
 */
function settle(request: FastifyRequest, reply: FastifyReply): void {
  if (reply.sent || reply.raw.headersSent || request.raw.aborted) return;
  const socket = request.socket as FastifyRequest['socket'] | undefined;
  if (socket && !socket.destroyed) void reply.send(undefined);
}

/** Metadata that would make Nest's router run more than the global guards and filter for McpController. */
const ROUTE_ENHANCERS = [GUARDS_METADATA, INTERCEPTORS_METADATA, PIPES_METADATA, EXCEPTION_FILTERS_METADATA];

/**
 * Installs the MCP lane ({@link McpLane}) on `fastify` (an `onRoute` hook: call before the app
 * initializes, i.e. before `listen`), unless {@link McpLaneOffModule} is imported. The guards
 * it runs are Nest's own list of global guards (`ApplicationConfig.getGlobalGuards()`, every
 * `APP_GUARD` of every module, in Nest's order: the very instances Nest runs for every other
 * route), so a global guard another module registers is never skipped; `expectedGuards` (the
 * app module's `APP_GUARD` classes, in order) must be among them, in that order. `filter` is the
 * `APP_FILTER` class, which must be the only global filter. Throws at startup if McpController
 * (or one of its routes) declares its own guards, interceptors, pipes or filters, or if there
 * are global interceptors, pipes or request-scoped global enhancers — which the lane does not
 * run; the app fails to become ready if the lane saw no `/mcp` route (installed too late).
 */
export function installMcpLane(app: INestApplicationContext, fastify: FastifyInstance, expectedGuards: readonly Type<CanActivate>[], filter: Type<ExceptionFilter>): McpLane | undefined {
  if (laneOff(app)) return undefined;
  const guards = globalGuards(app, expectedGuards, filter);
  for (const target of [McpController, AGGREGATED, SINGLE]) {
    for (const key of ROUTE_ENHANCERS) {
      const declared: unknown = Reflect.getMetadata(key, target);
      if (Array.isArray(declared) && declared.length > 0) throw new Error(`the MCP lane does not run ${key} declared on McpController; serve /mcp through Nest or teach the lane`);
    }
  }
  const lane = new McpLane({ guards, filter: app.get(filter), controller: app.get(McpController) });
  fastify.addHook('onRoute', (route) => lane.wrap(route));
  fastify.addHook('onReady', (done) => done(lane.wrapped === 2 ? undefined : new Error(`the MCP lane took over ${lane.wrapped} of the 2 /mcp routes: install it before the app initializes`)));
  return lane;
}

/**
 * Nest's global guards for `app` (the `ApplicationConfig` the Nest application keeps; Nest has
 * no public getter for it), checked: `expected`'s instances among them in that order, `filter`
 * the one global filter, no global interceptor or pipe, nothing request-scoped. Throws otherwise.
 */
function globalGuards(app: INestApplicationContext, expected: readonly Type<CanActivate>[], filter: Type<ExceptionFilter>): readonly CanActivate[] {
  const config = (app as unknown as { config?: unknown }).config;
  if (!(config instanceof ApplicationConfig)) throw new Error("the MCP lane cannot read Nest's global enhancers (ApplicationConfig): serve /mcp through Nest or teach the lane");
  const guards = config.getGlobalGuards();
  const mine = expected.map((g) => app.get(g));
  const order = mine.map((g) => guards.indexOf(g));
  if (order.some((at, i) => at < 0 || (i > 0 && at < order[i - 1]))) throw new Error("the MCP lane's guards are not among Nest's global guards in their order");
  const filters = config.getGlobalFilters();
  if (filters.length !== 1 || filters[0] !== app.get(filter)) throw new Error(`the MCP lane runs one global filter (${filter.name}); Nest has ${filters.length}`);
  const unrun = [
    ['interceptors', config.getGlobalInterceptors().length + config.getGlobalRequestInterceptors().length],
    ['pipes', config.getGlobalPipes().length + config.getGlobalRequestPipes().length],
    ['request-scoped guards', config.getGlobalRequestGuards().length],
    ['request-scoped filters', config.getGlobalRequestFilters().length],
  ].filter(([, n]) => (n as number) > 0);
  if (unrun.length > 0) throw new Error(`the MCP lane does not run global ${unrun.map(([what]) => what).join(', ')}; serve /mcp through Nest or teach the lane`);
  return [...guards];
}

function laneOff(app: INestApplicationContext): boolean {
  try {
    return app.get(MCP_LANE_OFF, { strict: false }) !== undefined;
  } catch {
    return false;
  }
}
