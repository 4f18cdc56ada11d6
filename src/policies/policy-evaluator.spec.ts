import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { evaluate, type PolicyPrincipal, type PolicyRule } from './policy-evaluator.js';

let n = 0;
const rule = (partial: Partial<PolicyRule> & Pick<PolicyRule, 'subject' | 'effect'>): PolicyRule => ({
  id: `p${++n}`,
  operations: ['*'],
  targets: ['*'],
  description: null,
  ...partial,
});
const member: PolicyPrincipal = { userId: 'u1', apiKeyId: null, roles: ['member'], groups: ['eng'] };
const keyed: PolicyPrincipal = { userId: 'u2', apiKeyId: 'k1', roles: ['member'], groups: [] };

describe('policy evaluator', () => {
  it('falls back to the default when no rule matches, either way', () => {
    assert.deepEqual(evaluate([], member, 'tools/call', 'github__x', 'allow'), { allowed: true, by: 'default' });
    assert.deepEqual(evaluate([], member, 'tools/call', 'github__x', 'deny'), { allowed: false, by: 'default' });
  });

  it('allows on a matching allow under a deny default', () => {
    const allow = rule({ subject: { role: 'member' }, effect: 'allow', targets: ['github__*'] });
    assert.deepEqual(evaluate([allow], member, 'tools/call', 'github__create_issue', 'deny'), { allowed: true, by: allow });
    assert.equal(evaluate([allow], member, 'tools/call', 'jira__create', 'deny').allowed, false, 'target outside the glob');
  });

  it('lets deny win over allow, whatever the order, and reports the deny', () => {
    const allow = rule({ subject: { role: 'member' }, effect: 'allow' });
    const deny = rule({ subject: { group: 'eng' }, effect: 'deny', targets: ['prod__*'] });
    for (const rules of [
      [allow, deny],
      [deny, allow],
    ]) {
      assert.deepEqual(evaluate(rules, member, 'tools/call', 'prod__drop_db', 'allow'), { allowed: false, by: deny });
      assert.deepEqual(evaluate(rules, member, 'tools/call', 'dev__drop_db', 'allow'), { allowed: true, by: allow });
    }
  });

  it('reports the first matching deny when several match', () => {
    const d1 = rule({ subject: { role: 'member' }, effect: 'deny' });
    const d2 = rule({ subject: { userId: 'u1' }, effect: 'deny' });
    assert.equal(evaluate([d1, d2], member, 'prompts/get', 'a__b', 'allow').by, d1);
  });

  it('matches each kind of subject, and only that', () => {
    const cases: [PolicyRule['subject'], PolicyPrincipal, boolean][] = [
      [{ role: 'member' }, member, true],
      [{ role: 'admin' }, member, false],
      [{ group: 'eng' }, member, true],
      [{ group: 'ops' }, member, false],
      [{ userId: 'u1' }, member, true],
      [{ userId: 'u2' }, member, false],
      [{ apiKeyId: 'k1' }, keyed, true],
      [{ apiKeyId: 'k1' }, member, false],
      [{ userId: 'u1' }, { ...member, userId: null }, false],
    ];
    for (const [subject, principal, matches] of cases) {
      const deny = rule({ subject, effect: 'deny' });
      assert.equal(evaluate([deny], principal, 'tools/call', 'x__y', 'allow').allowed, !matches, JSON.stringify(subject));
    }
  });

  it('matches operations exactly or through *', () => {
    const onlyRead = rule({ subject: { role: 'member' }, effect: 'deny', operations: ['resources/read'] });
    assert.equal(evaluate([onlyRead], member, 'resources/read', 'a__file:///x', 'allow').allowed, false);
    assert.equal(evaluate([onlyRead], member, 'tools/call', 'a__file:///x', 'allow').allowed, true);
    assert.equal(evaluate([onlyRead], member, 'prompts/get', 'a__file:///x', 'allow').allowed, true);
    const all = rule({ subject: { role: 'member' }, effect: 'deny', operations: ['*'] });
    for (const op of ['tools/call', 'resources/read', 'prompts/get'] as const) assert.equal(evaluate([all], member, op, 'a__b', 'allow').allowed, false);
  });

  it('matches targets by whole-name glob', () => {
    const deny = rule({ subject: { role: 'member' }, effect: 'deny', targets: ['github__delete_*', 'jira__?'] });
    assert.equal(evaluate([deny], member, 'tools/call', 'github__delete_repo', 'allow').allowed, false);
    assert.equal(evaluate([deny], member, 'tools/call', 'github__delete_', 'allow').allowed, false);
    assert.equal(evaluate([deny], member, 'tools/call', 'xgithub__delete_repo', 'allow').allowed, true);
    assert.equal(evaluate([deny], member, 'tools/call', 'jira__a', 'allow').allowed, false);
    assert.equal(evaluate([deny], member, 'tools/call', 'jira__ab', 'allow').allowed, true);
  });

  it('ignores rules about other principals even when they would deny', () => {
    const deny = rule({ subject: { role: 'admin' }, effect: 'deny' });
    const allow = rule({ subject: { role: 'member' }, effect: 'allow' });
    assert.deepEqual(evaluate([deny, allow], member, 'tools/call', 'a__b', 'deny'), { allowed: true, by: allow });
  });
});
