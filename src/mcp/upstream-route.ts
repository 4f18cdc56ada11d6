import type { UpstreamConnection } from '../upstreams/upstream-connection.js';
import type { UpstreamServerEntity } from '../upstreams/upstream-server.entity.js';
import { PoolExhaustedError, type UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { fingerprint as fingerprintOf, hasPlaceholders, resolve, secretNames, type Caller, type Resolved } from '../secrets/placeholders.js';
import { secretOwner, type CallerSecrets, type SecretsService } from '../secrets/secrets.service.js';
import { assertAuthorized, type AuthorizedOperation } from './pipeline/authorized-operation.js';
import type { Principal } from '../auth/principal.js';
import type { ConnectRequest, UpstreamConnectionsService, UsableToken } from '../upstream-oauth/upstream-connections.service.js';

/**
 * Where one call to one upstream goes, for one caller. A route to a server with `oauth` carries
 * the token it sends (`oauth`), so a refused token can be refreshed and the call routed again.
 * A problem may carry `connect`: the caller must connect (or reconnect) their account — the
 * machine-readable ask the edge turns into the client's era (URL elicitation, `input_required`,
 * or the plain `problem` text).
 */
export type Route =
  | { connection: UpstreamConnection; inject: Record<string, string>; release: () => void; oauth?: UsableToken }
  | { problem: string; missing: boolean; connect?: ConnectRequest };

/** What routing reads: the servers, secrets and OAuth connections. */
export interface RouteServices {
  upstreams: UpstreamServersService;
  secrets: SecretsService;
  connections: UpstreamConnectionsService;
}

interface Plan {
  perCaller: boolean;
  oauth: boolean;
  injects: boolean;
  names: string[];
}

const plans = new WeakMap<UpstreamServerEntity, Plan>();
const noop = () => undefined;

/** The `inject` of a route that injects nothing (shared, frozen: compare with it to skip the merge). */
export const NO_INJECT: Record<string, string> = Object.freeze({});

/**
 * The route of a server without placeholders or injected arguments: its shared connection,
 * nothing injected, nothing to release. One frozen object per connection, not one per call
 * (no consumer changes a route).
 */
const sharedRoutes = new WeakMap<UpstreamConnection, Route>();
function sharedRoute(connection: UpstreamConnection): Route {
  let route = sharedRoutes.get(connection);
  if (!route) sharedRoutes.set(connection, (route = Object.freeze({ connection, inject: NO_INJECT, release: noop })));
  return route;
}

/** Whether `route` is a plain server's shared route: nothing injected, no OAuth token, a `release` that does nothing. */
export function isSharedRoute(route: Route): route is Extract<Route, { connection: UpstreamConnection }> {
  return 'connection' in route && sharedRoutes.get(route.connection) === route;
}

function planOf(template: UpstreamServerEntity): Plan {
  let plan = plans.get(template);
  if (!plan) {
    plan = {
      perCaller: hasPlaceholders([template.env, template.headers]) || (template.oauth != null && template.transport !== 'stdio'),
      oauth: template.oauth != null && template.transport !== 'stdio',
      injects: Object.keys(template.inject).length > 0,
      names: secretNames([template.env, template.headers, template.inject]),
    };
    plans.set(template, plan);
  }
  return plan;
}

/**
 * Picks the connection an authorized operation's call uses: the caller is the operation's
 * principal, the server its target's. Takes only an {@link AuthorizedOperation} (from
 * `authorize()`), so nothing reaches an upstream without a policy decision. Undefined when the
 * server is gone or not connected on this replica; `{ problem }` when the caller lacks a secret
 * the server needs (or the pool is exhausted). Call `release()` when the exchange is over.
 * Known without a promise (returned as is, not wrapped) when the server is gone or its route
 * is the plain shared one — the steady state of most calls; else a promise. Only a programming
 * error (a forged operation) is thrown.
 */
export function routeCall(services: RouteServices, authorized: AuthorizedOperation, token?: UsableToken): Route | undefined | Promise<Route | undefined> {
  assertAuthorized(authorized);
  const { principal, target } = authorized.operation;
  if (!target) throw new Error('BUG: routeCall on an operation without a target');
  return routeTo(services, principal, target.server, token);
}

/** How long a list waits for callers' connections to list (`listThroughCaller`); a slower one lists for later lists. */
const CALLER_LISTING_WAIT_MS = 5_000;

/**
 * Starts (or reuses) `principal`'s own connections to `servers` — per-user servers whose
 * shared connection the upstream refuses (see CallerListing) — so that what they list stands
 * in for the servers' offerings, and waits up to 5 s for them. A principal lacking a value the
 * server needs is skipped: nothing is sent for them. Never throws.
 *
 * Policies are not consulted here: nothing is called on the principal's behalf but the
 * handshake and the lists their first call would make anyway; what the lists show is filtered
 * per principal as always.
 */
export async function listThroughCaller(services: RouteServices, principal: Principal, servers: string[]): Promise<void> {
  const started = servers.map(async (server) => {
    let route: Route | undefined;
    try {
      route = await routeTo(services, principal, server);
    } catch {
      route = undefined;
    }
    if (route && 'release' in route) route.release();
  });
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<void>((resolve) => (timer = setTimeout(resolve, CALLER_LISTING_WAIT_MS).unref()));
  await Promise.race([Promise.all(started), waited]);
  clearTimeout(timer);
}

/** The secrets of a server that names none (a template with only `${user:…}` placeholders). */
const NO_SECRETS: CallerSecrets = { values: new Map<string, string>(), unreadable: new Map<string, string>() };

/** A template's env, headers and injected arguments resolved for one caller, and the pool key of env + headers. */
interface Resolution {
  env: Resolved;
  headers: Resolved;
  inject: Resolved;
  /** {@link fingerprintOf} of the resolved env and headers (the connection pool's key). */
  fingerprint: string;
}

/** Entries per (secrets, template) before the map is started again (distinct user claims on one template). */
const RESOLUTIONS_PER_TEMPLATE = 1_000;

/**
 * Resolutions remembered per caller's secrets (the object {@link SecretsService.forCaller} caches:
 * replaced, never mutated, when a secret changes), per template (replaced when the server's
 * config changes), per user claims (`${user:id}`, `${user:email}`) — so an entry can never
 * outlive what it was computed from, and both keys are held weakly. Saves re-running the three
 * placeholder substitutions and the pool key's SHA-256 on every call (measured: `routeCall()`
 * with a `${secret:…}` header +10.3 µs over a plain server before, see docs/benchmarks.md).
 */
const resolutions = new WeakMap<CallerSecrets, WeakMap<object, Map<string, Resolution>>>();

function resolutionFor(template: UpstreamServerEntity, callerSecrets: CallerSecrets, caller: Caller): Resolution {
  let byTemplate = resolutions.get(callerSecrets);
  if (!byTemplate) resolutions.set(callerSecrets, (byTemplate = new WeakMap<object, Map<string, Resolution>>()));
  let byUser = byTemplate.get(template);
  if (!byUser) byTemplate.set(template, (byUser = new Map<string, Resolution>()));
  const who = `${caller.userId ?? ''}\n${caller.email ?? ''}`;
  let resolution = byUser.get(who);
  if (!resolution) {
    const { values } = callerSecrets;
    const env = resolve(template.env, values, caller, template.transport === 'stdio' ? 'env' : undefined);
    const headers = resolve(template.headers, values, caller, template.transport === 'stdio' ? undefined : 'header');
    const inject = resolve(template.inject, values, caller, 'argument');
    // Shared by every call of this caller: frozen, so no consumer can change another call's values.
    for (const r of [env, headers, inject]) Object.freeze(r.values);
    resolution = { env, headers, inject, fingerprint: fingerprintOf([env.values, headers.values]) };
    if (byUser.size >= RESOLUTIONS_PER_TEMPLATE) byUser.clear();
    byUser.set(who, resolution);
  }
  return resolution;
}

/**
 * Picks the connection a call to `server` uses for `principal`. A server without placeholders:
 * the shared connection. A server whose env/headers hold `${secret:…}` / `${user:…}`: the
 * caller's own pooled connection, started with the resolved values. `inject` arguments are
 * resolved for the caller too. A secret the caller lacks (and the server has no shared value
 * for) stops the call before anything is sent upstream, with the exact request that sets it.
 *
 * A server with `oauth`: the caller's own pooled connection sending `Authorization: Bearer`
 * with the caller's token (their own connection, else the server's shared one; refreshed when
 * near expiry) — `token` when given (a refreshed one after a 401). The pool keys connections
 * by the resolved headers, so a connection carries exactly one user's token, and a refreshed
 * token starts a new one. Without a usable token: `{ problem, connect }`.
 *
 * Undefined and the shared route are returned as they are (see {@link routeCall}); the rest
 * ({@link routeFor}) as a promise.
 */
function routeTo(services: RouteServices, principal: Principal, server: string, token?: UsableToken): Route | undefined | Promise<Route | undefined> {
  const { upstreams } = services;
  const connection = upstreams.connection(server);
  const template = upstreams.template(server);
  if (!connection || !template) return undefined;
  const plan = planOf(template);
  if (!plan.perCaller && !plan.injects) return sharedRoute(connection);
  return routeFor(services, principal, server, connection, template, plan, token);
}

/** {@link routeTo} for a server with placeholders, injected arguments or `oauth`: the caller's values (and pooled connection). */
async function routeFor(
  services: RouteServices,
  principal: Principal,
  server: string,
  connection: UpstreamConnection,
  template: UpstreamServerEntity,
  plan: Plan,
  token: UsableToken | undefined,
): Promise<Route | undefined> {
  const { upstreams, secrets } = services;
  const caller: Caller = { owner: secretOwner(principal), userId: principal.userId, email: principal.email };

  let oauth: UsableToken | undefined = token;
  if (plan.oauth && !oauth) {
    const got = await services.connections.accessTokenFor(server, principal);
    if ('connect' in got) return { problem: got.problem, missing: true, connect: got.connect };
    if ('failure' in got) return { problem: got.failure, missing: false };
    oauth = got;
  }

  const callerSecrets = plan.names.length > 0 ? await secrets.forCaller(server, caller.owner) : NO_SECRETS;
  const { unreadable } = callerSecrets;
  const { env, headers, inject, fingerprint } = resolutionFor(template, callerSecrets, caller);
  const missingSecrets = [...new Set([...env.missingSecrets, ...headers.missingSecrets, ...inject.missingSecrets])];
  const missingUser = [...new Set([...env.missingUser, ...headers.missingUser, ...inject.missingUser])];
  if (missingSecrets.length > 0) {
    const name = missingSecrets[0];
    const broken = unreadable.get(name);
    if (broken) return { problem: `Secret "${name}" for server "${server}" cannot be decrypted (${broken}); an administrator must restore its key, or set it again with ${secrets.howToSet(server, name)}`, missing: true };
    const others = missingSecrets.length > 1 ? ` (also missing: ${missingSecrets.slice(1).join(', ')})` : '';
    const who = caller.owner === null ? 'Sign in (send credentials), then set it' : 'Set it';
    return { problem: `Secret "${name}" for server "${server}" is not set${others}. ${who} with: ${secrets.howToSet(server, name)}`, missing: true };
  }
  if (missingUser.length > 0) {
    return { problem: `Server "${server}" is configured per user and needs your user ${missingUser.join(' and ')}, which this principal does not have; call it as a signed-in user`, missing: true };
  }
  // A value stored before validation existed, or a user claim, that its place cannot hold: named, never sent, never quoted.
  const invalid = [...env.invalid.map((i) => ({ ...i, field: 'env' })), ...headers.invalid.map((i) => ({ ...i, field: 'headers' }))][0];
  if (invalid) {
    const where = `${invalid.field}.${invalid.key}`;
    if (invalid.secret) return { problem: `Secret "${invalid.secret}" for server "${server}" cannot be used: it ${invalid.problem} (${where}). Set it again with: ${secrets.howToSet(server, invalid.secret)}`, missing: true };
    if (invalid.user) return { problem: `Server "${server}" cannot pass your user ${invalid.user} in ${where}: it ${invalid.problem}`, missing: true };
    return { problem: `Server "${server}" is misconfigured: ${where} ${invalid.problem}; an administrator must fix it`, missing: true };
  }
  if (!plan.perCaller) {
    // Secrets injected as arguments may come back in the upstream's stderr or errors: mask them there.
    if (inject.secretValues.length > 0) connection.maskAlso(inject.secretValues);
    return { connection, inject: inject.values, release: noop };
  }
  try {
    const sent = oauth ? { ...headers.values, Authorization: `Bearer ${oauth.token}` } : headers.values;
    const secretValues = [...env.secretValues, ...headers.secretValues, ...(oauth ? [oauth.token] : [])];
    const pooled = await upstreams.pooled(server, caller.owner ?? '', { env: env.values, headers: sent, secretValues, fingerprint: oauth ? undefined : fingerprint });
    if (inject.secretValues.length > 0) pooled.connection.maskAlso(inject.secretValues);
    return { connection: pooled.connection, inject: inject.values, release: pooled.release, ...(oauth ? { oauth } : {}) };
  } catch (error) {
    if (error instanceof PoolExhaustedError) return { problem: error.message, missing: false };
    throw error;
  }
}
