// Profiles Gatehouse under tools/call load with `node --cpu-prof`, as teams run it
// (NODE_ENV=production, LOG_LEVEL=info unless set, API key authentication), one era at a time,
// and prints the top frames by self time and by inclusive time, in µs per request.
// Usage: node bench/profile.mjs [legacy|modern|both] [seconds]   (needs a build and TEST_DATABASE_URL)
// The .cpuprofile files stay in .bench/profiles/ (open them in Chrome DevTools or speedscope).
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import autocannon from 'autocannon';
import { GATEHOUSE_NODE_FLAGS, launchGatehouse, toolsCallRequest } from './harness.mjs';

const which = process.argv[2] ?? 'both';
const SECONDS = Number(process.argv[3] ?? 8);
const outDir = resolve('.bench/profiles');
mkdirSync(outDir, { recursive: true });

/** Self and inclusive µs per request of each function (name file:line) in a .cpuprofile. */
function summarize(file, requests, window) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const label = (n) => {
    const f = n.callFrame;
    const url = f.url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '').replace(/.*\/dist\//, '');
    return `${f.functionName || '(anonymous)'} ${url ? `${url}:${f.lineNumber + 1}` : ''}`.trim();
  };
  const self = new Map();
  const incl = new Map();
  const dt = profile.timeDeltas;
  // Only the samples taken while the load ran (V8's ticks and process.hrtime share CLOCK_MONOTONIC).
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += dt[i];
    if (at < window.from || at > window.to) continue;
    const us = dt[i + 1] ?? 0;
    let node = byId.get(profile.samples[i]);
    const l = label(node);
    self.set(l, (self.get(l) ?? 0) + us);
    const seen = new Set();
    while (node) {
      const k = label(node);
      if (!seen.has(k)) {
        seen.add(k);
        incl.set(k, (incl.get(k) ?? 0) + us);
      }
      node = byId.get(parent.get(node.id));
    }
  }
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `  ${(v / requests).toFixed(2).padStart(8)} µs  ${k}`);
  const total = [...self.values()].reduce((a, b) => a + b, 0) - (self.get('(idle)') ?? 0);
  return { total: total / requests, self: top(self, 30), inclusive: top(incl, 60) };
}

async function profileEra(era) {
  const dir = join(outDir, era);
  rmSync(dir, { recursive: true, force: true });
  const { base, auth, stop } = await launchGatehouse({ nodeArgs: [...GATEHOUSE_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${dir}`] });
  try {
    const { headers, body } = await toolsCallRequest(base, auth, era);
    const from = Number(process.hrtime.bigint() / 1000n);
    const res = await autocannon({ url: `${base}/mcp`, method: 'POST', headers, body, connections: 16, duration: SECONDS });
    const bad = res.non2xx + res.errors + res.timeouts;
    process.stdout.write(`\n${era}: ${Math.round(res.requests.average)} req/s over ${SECONDS} s, ${res.requests.total} requests${bad ? `, ${bad} failed` : ''}\n`);
    const to = Number(process.hrtime.bigint() / 1000n);
    return { dir, requests: res.requests.total, window: { from, to } };
  } finally {
    await stop();
  }
}

for (const era of which === 'both' ? ['legacy', 'modern'] : [which]) {
  const { dir, requests, window } = await profileEra(era);
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no profile in ${dir}`);
  const s = summarize(join(dir, file), requests, window);
  process.stdout.write(`${era}: ${s.total.toFixed(1)} µs of CPU per request (profile: ${join(dir, file)})\nTop frames by self time, µs per request:\n${s.self.join('\n')}\nTop frames by inclusive time, µs per request:\n${s.inclusive.join('\n')}\n`);
}
