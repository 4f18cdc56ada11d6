import { globToRegExp } from '../upstreams/catalog.js';

/** Operations a policy can govern; `*` is every one of them. */
export const POLICY_OPERATIONS = ['tools/call', 'resources/read', 'prompts/get', '*'] as const;
export type PolicyOperation = Exclude<(typeof POLICY_OPERATIONS)[number], '*'>;

/** Exactly one of these identifies whom a policy is about. */
export type PolicySubject = { role: string } | { userId: string } | { apiKeyId: string } | { group: string };

export interface PolicyRule {
  id: string;
  subject: PolicySubject;
  effect: 'allow' | 'deny';
  operations: string[];
  /** Globs over the gateway's names: `<server>__<tool>`, `<server>__<prompt>`, `<server>__<resource uri>`. */
  targets: string[];
  description: string | null;
}

/** What the evaluator needs to know about the caller. */
export interface PolicyPrincipal {
  userId: string | null;
  apiKeyId: string | null;
  roles: readonly string[];
  groups: readonly string[];
}

export type Decision =
  | { allowed: true; by: PolicyRule | 'default' }
  | { allowed: false; by: PolicyRule | 'default' };

function subjectMatches(subject: PolicySubject, p: PolicyPrincipal): boolean {
  if ('role' in subject) return p.roles.includes(subject.role);
  if ('group' in subject) return p.groups.includes(subject.group);
  if ('userId' in subject) return p.userId !== null && p.userId === subject.userId;
  return p.apiKeyId !== null && p.apiKeyId === subject.apiKeyId;
}

const operationMatches = (rule: PolicyRule, operation: PolicyOperation) => rule.operations.includes('*') || rule.operations.includes(operation);
const targetMatches = (rule: PolicyRule, target: string) => rule.targets.some((glob) => globToRegExp(glob).test(target));

/**
 * Decides whether `principal` may perform `operation` on `target`. Pure: the same inputs
 * always give the same answer, nothing is read or written.
 *
 * Of the rules whose subject, operation and target all match, a `deny` wins over any `allow`
 * (the first matching deny, in the order given, is the one reported); with no `deny`, any
 * matching `allow` allows; with no matching rule at all, `fallback` decides
 * (GATEHOUSE_POLICY_DEFAULT).
 */
export function evaluate(
  rules: readonly PolicyRule[],
  principal: PolicyPrincipal,
  operation: PolicyOperation,
  target: string,
  fallback: 'allow' | 'deny',
): Decision {
  let allow: PolicyRule | undefined;
  for (const rule of rules) {
    if (!subjectMatches(rule.subject, principal) || !operationMatches(rule, operation) || !targetMatches(rule, target)) continue;
    if (rule.effect === 'deny') return { allowed: false, by: rule };
    allow ??= rule;
  }
  if (allow) return { allowed: true, by: allow };
  return { allowed: fallback === 'allow', by: 'default' };
}
