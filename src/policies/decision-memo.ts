import type { Decision } from './policy-evaluator.js';

/** Decisions remembered per principal before that principal's map is dropped and started over. */
export const MAX_DECISIONS_PER_PRINCIPAL = 1_000;

interface Remembered {
  version: number;
  /** Decisions by operation, then target (two lookups instead of a key string built per call). */
  decisions: Map<string, Map<string, Decision>>;
  /** Decisions held in all. */
  size: number;
}

/**
 * Policy decisions remembered per (principal, operation, target, policy-set version), so a
 * steady stream of calls evaluates each rule set once per principal and tool instead of on
 * every call (`evaluate` walks every rule and matches globs: its cost grows with the policy
 * set). Keyed by the principal *object*: the authentication caches hand out one immutable
 * object per credential and build a new one whenever the user, key or token changes, so a
 * changed principal can never hit a decision made for its old roles, and a dropped one frees
 * its decisions (WeakMap). A new policy-set version discards everything remembered for it.
 */
export class DecisionMemo {
  private readonly byPrincipal = new WeakMap<object, Remembered>();

  constructor(private readonly maxPerPrincipal = MAX_DECISIONS_PER_PRINCIPAL) {}

  /** The decision for `operation` on `target` under policy-set `version`, computed by `decide` at most once while remembered. */
  decide(principal: object, version: number, operation: string, target: string, decide: () => Decision): Decision {
    let decision = this.recall(principal, version, operation, target);
    if (decision === undefined) this.remember(principal, version, operation, target, (decision = decide()));
    return decision;
  }

  /** The remembered decision for `operation` on `target` under policy-set `version`, if any ({@link decide} without a closure per call). */
  recall(principal: object, version: number, operation: string, target: string): Decision | undefined {
    const remembered = this.byPrincipal.get(principal);
    if (!remembered || remembered.version !== version) return undefined;
    return remembered.decisions.get(operation)?.get(target);
  }

  /** Remembers `decision` (see {@link recall}); past the bound, the principal's decisions start over. */
  remember(principal: object, version: number, operation: string, target: string, decision: Decision): void {
    let remembered = this.byPrincipal.get(principal);
    if (!remembered || remembered.version !== version) {
      remembered = { version, decisions: new Map(), size: 0 };
      this.byPrincipal.set(principal, remembered);
    }
    if (remembered.size >= this.maxPerPrincipal) {
      remembered.decisions.clear();
      remembered.size = 0;
    }
    let byTarget = remembered.decisions.get(operation);
    if (!byTarget) remembered.decisions.set(operation, (byTarget = new Map<string, Decision>()));
    if (!byTarget.has(target)) remembered.size++;
    byTarget.set(target, decision);
  }
}
