import type { Decision } from './policy-evaluator.js';

/** Decisions remembered per principal before that principal's map is dropped and started over. */
export const MAX_DECISIONS_PER_PRINCIPAL = 1_000;

interface Remembered {
  version: number;
  decisions: Map<string, Decision>;
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
    let remembered = this.byPrincipal.get(principal);
    if (!remembered || remembered.version !== version) {
      remembered = { version, decisions: new Map() };
      this.byPrincipal.set(principal, remembered);
    }
    const key = `${operation} ${target}`;
    let decision = remembered.decisions.get(key);
    if (decision === undefined) {
      decision = decide();
      if (remembered.decisions.size >= this.maxPerPrincipal) remembered.decisions.clear();
      remembered.decisions.set(key, decision);
    }
    return decision;
  }
}
