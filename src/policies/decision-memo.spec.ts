import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DecisionMemo } from './decision-memo.js';
import type { Decision } from './policy-evaluator.js';

const ALLOW: Decision = { allowed: true, by: 'default' };
const DENY: Decision = { allowed: false, by: 'default' };

describe('DecisionMemo', () => {
  it('evaluates once per (principal object, operation, target) within a policy-set version', () => {
    const memo = new DecisionMemo();
    const principal = {};
    let evaluations = 0;
    const decide = () => (evaluations++, ALLOW);
    for (let i = 0; i < 5; i++) assert.equal(memo.decide(principal, 1, 'tools/call', 'a__echo', decide), ALLOW);
    assert.equal(evaluations, 1);
    memo.decide(principal, 1, 'tools/call', 'a__other', decide);
    memo.decide(principal, 1, 'prompts/get', 'a__echo', decide);
    memo.decide({}, 1, 'tools/call', 'a__echo', decide);
    assert.equal(evaluations, 4, 'another target, operation or principal object is evaluated on its own');
  });

  it('forgets every decision when the policy-set version changes', () => {
    const memo = new DecisionMemo();
    const principal = {};
    assert.equal(memo.decide(principal, 1, 'tools/call', 'a__echo', () => ALLOW), ALLOW);
    assert.equal(memo.decide(principal, 2, 'tools/call', 'a__echo', () => DENY), DENY, 'a deny added in version 2 applies at once');
    assert.equal(memo.decide(principal, 2, 'tools/call', 'a__echo', () => ALLOW), DENY);
  });

  it('recall/remember: what remember stored is recalled for that principal object, operation, target and version only', () => {
    const memo = new DecisionMemo();
    const principal = {};
    assert.equal(memo.recall(principal, 1, 'tools/call', 'a__echo'), undefined);
    memo.remember(principal, 1, 'tools/call', 'a__echo', DENY);
    assert.equal(memo.recall(principal, 1, 'tools/call', 'a__echo'), DENY);
    assert.equal(memo.recall(principal, 1, 'prompts/get', 'a__echo'), undefined);
    assert.equal(memo.recall(principal, 1, 'tools/call', 'a__other'), undefined);
    assert.equal(memo.recall({}, 1, 'tools/call', 'a__echo'), undefined);
    assert.equal(memo.recall(principal, 2, 'tools/call', 'a__echo'), undefined, 'another policy-set version');
    // No key string joins operation and target: "a b" + "c" is not "a" + "b c".
    memo.remember(principal, 1, 'a b', 'c', ALLOW);
    assert.equal(memo.recall(principal, 1, 'a', 'b c'), undefined);
  });

  it('the bound counts decisions across operations, and storing one twice does not count twice', () => {
    const memo = new DecisionMemo(3);
    const principal = {};
    memo.remember(principal, 1, 'tools/call', 'a', ALLOW);
    memo.remember(principal, 1, 'tools/call', 'a', ALLOW);
    memo.remember(principal, 1, 'prompts/get', 'a', ALLOW);
    memo.remember(principal, 1, 'resources/read', 'a', ALLOW);
    assert.equal(memo.recall(principal, 1, 'tools/call', 'a'), ALLOW, 'three distinct decisions fit');
    memo.remember(principal, 1, 'tools/call', 'b', ALLOW);
    assert.equal(memo.recall(principal, 1, 'tools/call', 'a'), undefined, 'the fourth started the map over');
    assert.equal(memo.recall(principal, 1, 'tools/call', 'b'), ALLOW);
  });

  it('holds at most its bound of decisions per principal', () => {
    const memo = new DecisionMemo(3);
    const principal = {};
    let evaluations = 0;
    const decide = () => (evaluations++, ALLOW);
    for (const t of ['a', 'b', 'c', 'd', 'a']) memo.decide(principal, 1, 'tools/call', t, decide);
    assert.equal(evaluations, 5, 'the fourth target started the map over, so a is evaluated again');
  });
});
