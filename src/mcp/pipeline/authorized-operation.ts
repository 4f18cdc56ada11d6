import { ProtocolError } from '@modelcontextprotocol/server';
import type { PoliciesService } from '../../policies/policies.service.js';
import type { PolicyPrincipal } from '../../policies/policy-evaluator.js';
import type { Principal } from '../../auth/principal.js';
import type { ClassifiedOperation, McpOperationKind } from './mcp-operation.js';

/** JSON-RPC error code for an operation a policy denies (implementation-defined server range). */
export const POLICY_DENIED = -32003;

/** The subset of a principal the policy evaluator reads. */
export const policySubject = (p: Principal): PolicyPrincipal => ({ userId: p.userId, apiKeyId: p.keyId, roles: p.roles, groups: p.groups });

/**
 * An operation the policy set allows. Routing and calling an upstream only accept this type,
 * and the class is not exported: the only way to obtain one is {@link authorize} (the ES
 * private field makes the type nominal, so an object literal or a cast from another shape does
 * not type-check, and {@link assertAuthorized} catches a forced cast at run time). Skipping
 * authorization therefore cannot be written by accident.
 */
class Authorized<K extends McpOperationKind = McpOperationKind> {
  readonly #granted = true;
  constructor(readonly operation: ClassifiedOperation<K>) {}
  /** True (for the run-time check). */
  get granted(): boolean {
    return this.#granted;
  }
}

export type AuthorizedOperation<K extends McpOperationKind = McpOperationKind> = Authorized<K>;

/** Throws unless `value` came from {@link authorize} (guards against `as` casts). */
export function assertAuthorized(value: unknown): asserts value is AuthorizedOperation {
  if (!(value instanceof Authorized)) throw new Error('BUG: an MCP operation reached an upstream without authorization');
}

/**
 * Decides `operation` against the policy set: returns the {@link AuthorizedOperation} to route,
 * or throws the JSON-RPC error `-32003` (`POLICY_DENIED`) whose message names the policy and
 * whose `data.policyId` carries its id (`null` when the default effect denied). Operations
 * without a policy check (lists — filtered per principal instead —, ping, logging/setLevel)
 * are always authorized.
 */
export function authorize<K extends McpOperationKind>(policies: PoliciesService, operation: ClassifiedOperation<K>): AuthorizedOperation<K> {
  const check = operation.policy;
  if (check) {
    const decision = policies.decideFor(operation.principal, check.operation, check.name);
    if (!decision.allowed) {
      const why =
        decision.by === 'default'
          ? 'no policy allows it and GATEHOUSE_POLICY_DEFAULT is deny'
          : `denied by policy ${decision.by.id}${decision.by.description ? ` (${decision.by.description})` : ''}`;
      throw new ProtocolError(POLICY_DENIED, `Forbidden: ${check.operation} on "${check.name}" ${why}`, {
        policyId: decision.by === 'default' ? null : decision.by.id,
      });
    }
  }
  return new Authorized(operation);
}
