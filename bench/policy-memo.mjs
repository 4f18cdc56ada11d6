// What the policy decision memo buys per tools/call: evaluate() over a rule set of RULES rules
// (default 200: role, group, user and key subjects, globs over 50 servers) against the memo's
// lookup, in alternating blocks of sequential calls. Needs a build (npm run build).
import { evaluate } from '../dist/src/policies/policy-evaluator.js';
import { DecisionMemo } from '../dist/src/policies/decision-memo.js';

const RULES = Number(process.env.RULES ?? 200);
const subjects = [{ role: 'member' }, { group: 'eng' }, { userId: 'u-2' }, { apiKeyId: 'k-9' }];
const rules = Array.from({ length: RULES }, (_, i) => ({
  id: `p-${i}`,
  subject: subjects[i % subjects.length],
  effect: i % 7 === 0 ? 'deny' : 'allow',
  operations: ['tools/call'],
  targets: [`server${i % 50}__*`, `other${i}__tool_${i}`],
  description: null,
}));
const principal = { userId: 'u-1', keyId: 'k-1', roles: ['member'], groups: ['eng'], id: 'api_key:k-1' };
const subject = { userId: principal.userId, apiKeyId: principal.keyId, roles: principal.roles, groups: principal.groups };
const memo = new DecisionMemo();
const target = 'server49__echo';
const fns = {
  evaluate: () => evaluate(rules, subject, 'tools/call', target, 'deny'),
  memo: () => memo.decide(principal, 1, 'tools/call', target, () => evaluate(rules, subject, 'tools/call', target, 'deny')),
};
const BLOCK = 20_000;
const samples = { evaluate: [], memo: [] };
for (const f of Object.values(fns)) for (let i = 0; i < BLOCK; i++) f();
for (let round = 0; round < 5; round++) {
  for (const name of round % 2 ? ['memo', 'evaluate'] : ['evaluate', 'memo']) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < BLOCK; i++) fns[name]();
    samples[name].push(Number(process.hrtime.bigint() - start) / BLOCK / 1000);
  }
}
const median = (v) => v.sort((a, b) => a - b)[2];
process.stdout.write(`policy decision with ${RULES} rules: evaluate ${median(samples.evaluate).toFixed(2)} µs, remembered ${median(samples.memo).toFixed(2)} µs per call\n`);
