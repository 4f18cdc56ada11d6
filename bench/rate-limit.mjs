// The per-request cost of the rate limiter (HTTP_RATE_LIMIT_*), measured in-process on the
// built code: what the two guards add to a request — the address check before authenticating
// and the principal charge after — against an empty async step, in the style of in-process.mjs.
// Run: npm run build && node bench/rate-limit.mjs
import { RateLimitService } from '../dist/src/rate-limit/rate-limit.service.js';

const BLOCK = 20_000;
const ROUNDS = 5;

async function compare(fns) {
  const names = Object.keys(fns);
  for (const name of names) for (let i = 0; i < 5_000; i++) await fns[name](i);
  const samples = Object.fromEntries(names.map((n) => [n, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length];
      const start = process.hrtime.bigint();
      for (let i = 0; i < BLOCK; i++) await fns[name](i);
      samples[name].push(Number(process.hrtime.bigint() - start) / BLOCK / 1000);
    }
  }
  return Object.fromEntries(names.map((n) => [n, samples[n].sort((a, b) => a - b)[Math.floor(ROUNDS / 2)]]));
}

const limits = new RateLimitService({
  rateLimit: { enabled: true, windowMs: 60_000, maxRequests: 1e9, maxUnauthenticated: 1e9, replicas: 1, tools: [{ pattern: 'gh__create_*', max: 1e9 }] },
});
const principals = Array.from({ length: 1_000 }, (_, i) => `api_key:${i}`);
const us = await compare({
  baseline: () => Promise.resolve(),
  'address check + principal charge': async (i) => {
    await limits.addressExhausted('10.0.0.1');
    await limits.chargePrincipal(principals[i % principals.length]);
  },
  'tool charge': (i) => limits.chargeTool(principals[i % principals.length], 'gh__create_issue'),
});
for (const [name, value] of Object.entries(us)) console.log(`${name.padEnd(36)} ${value.toFixed(2)} µs/request`);
console.log(`added per request: ${(us['address check + principal charge'] - us.baseline).toFixed(2)} µs`);
