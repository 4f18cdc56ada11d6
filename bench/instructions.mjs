// Instructions per `tools/call`, counted by valgrind's callgrind: unlike CPU time, the count
// barely moves with the load other processes put on the machine, so it can compare builds on a
// shared machine. Gatehouse runs as teams run it (production, LOG_LEVEL=info, an API key) under
// `valgrind --tool=callgrind` with instrumentation off; after WARMUP calls, it is switched on
// (`callgrind_control -i on`) for CALLS calls made by CONCURRENCY sequential clients, then the
// count is read (`callgrind_control -d`). Slow: valgrind runs Node ~50× slower (start-up takes
// minutes).
// Usage: node bench/instructions.mjs [legacy|modern] [distDir=.] [label]   (WARMUP=1000, CALLS=2000, CONCURRENCY=4,
//   NODE_FLAGS: node flags for Gatehouse, comma-separated; default GATEHOUSE_NODE_FLAGS, '' for none)
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, rmSync, mkdirSync } from 'node:fs';
import { resolve, join } from 'node:path';
import { GATEHOUSE_NODE_FLAGS, launchGatehouse, toolsCallRequest } from './harness.mjs';

const era = process.argv[2] ?? 'legacy';
const DIST = resolve(process.argv[3] ?? '.');
const label = process.argv[4] ?? era;
const WARMUP = Number(process.env.WARMUP ?? 1000);
const CALLS = Number(process.env.CALLS ?? 2000);
const CONCURRENCY = Number(process.env.CONCURRENCY ?? 4);
const out = resolve('.bench/callgrind', label);
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const wrapper = ['valgrind', '--tool=callgrind', '--instr-atstart=no', '--smc-check=all-non-file', `--callgrind-out-file=${out}/callgrind.out.%p`];
// Under valgrind everything is ~50× slower: time limits that would otherwise fail readiness are raised.
const slow = { GATEHOUSE_BUS_LIVENESS_INTERVAL: '600000', GATEHOUSE_BUS_LIVENESS_TIMEOUT: '600000', DB_CONNECT_TIMEOUT: '600000', GATEHOUSE_READY_UPSTREAMS_TIMEOUT: '600000' };
const nodeArgs = process.env.NODE_FLAGS === undefined ? GATEHOUSE_NODE_FLAGS : process.env.NODE_FLAGS.split(',').filter(Boolean);
const { base, auth, child, stop } = await launchGatehouse({ dir: DIST, wrapper, nodeArgs, stderr: process.env.VERBOSE ? 'inherit' : 'ignore', readyTimeoutMs: 1_800_000, env: slow });
try {
  const { headers, body } = await toolsCallRequest(base, auth, era);
  const run = async (n) => {
    let bad = 0;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async (_, k) => {
        for (let i = k; i < n; i += CONCURRENCY) {
          const r = await fetch(`${base}/mcp`, { method: 'POST', headers, body });
          await r.text();
          if (r.status !== 200) bad++;
        }
      }),
    );
    if (bad) throw new Error(`${bad} calls failed`);
  };
  await run(WARMUP);
  execFileSync('callgrind_control', ['-z', String(child.pid)], { stdio: 'ignore' });
  execFileSync('callgrind_control', ['-i', 'on', String(child.pid)], { stdio: 'ignore' });
  await run(CALLS);
  execFileSync('callgrind_control', ['-i', 'off', String(child.pid)], { stdio: 'ignore' });
  execFileSync('callgrind_control', ['-d', String(child.pid)], { stdio: 'ignore' });
  const files = readdirSync(out).filter((f) => f.startsWith('callgrind.out'));
  let ir = 0;
  for (const f of files) {
    // A dump's `summary:` line can be 0 while its `totals:` holds the count: take the larger.
    for (const m of readFileSync(join(out, f), 'utf8').matchAll(/^(?:summary|totals): (\d+)/gm)) ir = Math.max(ir, Number(m[1]));
  }
  process.stdout.write(`${label} (${era}, ${DIST}): ${(ir / CALLS / 1e6).toFixed(3)} M instructions per tools/call (${CALLS} calls after ${WARMUP}, ${CONCURRENCY} clients)\n`);
} finally {
  await stop();
}
