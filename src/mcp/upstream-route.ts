import type { UpstreamConnection } from '../upstreams/upstream-connection.js';
import type { UpstreamServerEntity } from '../upstreams/upstream-server.entity.js';
import { PoolExhaustedError, type UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import { hasPlaceholders, resolve, secretNames, type Caller } from '../secrets/placeholders.js';
import { secretOwner, type SecretsService } from '../secrets/secrets.service.js';
import { assertAuthorized, type AuthorizedOperation } from './pipeline/authorized-operation.js';

/** Where one call to one upstream goes, for one caller. */
export type Route =
  | { connection: UpstreamConnection; inject: Record<string, string>; release: () => void }
  | { problem: string; missing: boolean };

interface Plan {
  perCaller: boolean;
  injects: boolean;
  names: string[];
}

const plans = new WeakMap<UpstreamServerEntity, Plan>();
const noop = () => undefined;

function planOf(template: UpstreamServerEntity): Plan {
  let plan = plans.get(template);
  if (!plan) {
    plan = {
      perCaller: hasPlaceholders([template.env, template.headers]),
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
 */
export function routeCall(upstreams: UpstreamServersService, secrets: SecretsService, authorized: AuthorizedOperation): Promise<Route | undefined> {
  assertAuthorized(authorized);
  const { principal, target } = authorized.operation;
  if (!target) throw new Error('BUG: routeCall on an operation without a target');
  const caller: Caller = { owner: secretOwner(principal), userId: principal.userId, email: principal.email };
  return routeTo(upstreams, secrets, caller, target.server);
}

/**
 * Picks the connection a call to `server` uses for `caller`. A server without placeholders:
 * the shared connection. A server whose env/headers hold `${secret:…}` / `${user:…}`: the
 * caller's own pooled connection, started with the resolved values. `inject` arguments are
 * resolved for the caller too. A secret the caller lacks (and the server has no shared value
 * for) stops the call before anything is sent upstream, with the exact request that sets it.
 */
async function routeTo(upstreams: UpstreamServersService, secrets: SecretsService, caller: Caller, server: string): Promise<Route | undefined> {
  const connection = upstreams.connection(server);
  const template = upstreams.template(server);
  if (!connection || !template) return undefined;
  const plan = planOf(template);
  if (!plan.perCaller && !plan.injects) return { connection, inject: {}, release: noop };

  const { values, unreadable } = plan.names.length > 0 ? await secrets.forCaller(server, caller.owner) : { values: new Map<string, string>(), unreadable: new Map<string, string>() };
  const env = resolve(template.env, values, caller, template.transport === 'stdio' ? 'env' : undefined);
  const headers = resolve(template.headers, values, caller, template.transport === 'stdio' ? undefined : 'header');
  const inject = resolve(template.inject, values, caller, 'argument');
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
    const pooled = await upstreams.pooled(server, caller.owner ?? '', { env: env.values, headers: headers.values, secretValues: [...env.secretValues, ...headers.secretValues] });
    if (inject.secretValues.length > 0) pooled.connection.maskAlso(inject.secretValues);
    return { connection: pooled.connection, inject: inject.values, release: pooled.release };
  } catch (error) {
    if (error instanceof PoolExhaustedError) return { problem: error.message, missing: false };
    throw error;
  }
}
