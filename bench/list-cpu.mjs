// CPU per tools/list request (µs, user and kernel from /proc/<pid>/stat) of one Gatehouse build,
// 5 upstream tools (/mcp/echo) vs 200 (/mcp/many), as bench/run.mjs rows 5a–5d load them
// (32 connections), in alternating rounds of each build given (run side by side, so a paired
// comparison shares the machine's noise; all answers are checked byte-identical across builds).
// User time is ours + V8; system time is mostly the socket writes.
// PROFILE=<dir> writes each Gatehouse's .cpuprofile there.
// Usage: node bench/list-cpu.mjs <legacy|modern> <dir with built dist>... (REQUESTS=10000 ROUNDS=5)
// Needs TEST_DATABASE_URL (Linux only: reads /proc).
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import autocannon from 'autocannon';
import { ACCEPT, GATEHOUSE_NODE_FLAGS, LEGACY, freePort, launchGatehouse, list, modernHeaders, modernList } from './harness.mjs';

const era = process.argv[2] ?? 'legacy';
const dirs = process.argv.slice(3).map((d) => resolve(d));
if (dirs.length === 0) dirs.push(resolve('.'));
const N = Number(process.env.REQUESTS ?? 10000);
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const TICK = 1e6 / 100; // µs per clock tick (USER_HZ = 100)

/** utime and stime of `pid`, in µs, and its minor page faults. */
function cpu(pid) {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return { user: Number(f[11]) * TICK, sys: Number(f[12]) * TICK, faults: Number(f[7]) };
}

/** One Gatehouse of `dir` with the 5-tool `echo` and a 200-tool `many` upstream; the tools/list request of each. */
async function setUp(dir) {
  // PROFILE=<dir>: each Gatehouse writes a .cpuprofile there (bench/profile.mjs summarizes such files).
  const g = await launchGatehouse({ dir, nodeArgs: process.env.PROFILE ? [...GATEHOUSE_NODE_FLAGS, '--cpu-prof', `--cpu-prof-dir=${process.env.PROFILE}`] : GATEHOUSE_NODE_FLAGS });
  const port = await freePort();
  const many = spawn(process.execPath, ['bench/echo-upstream.mjs'], { env: { ...process.env, PORT: String(port), TOOLS: '200' }, stdio: 'ignore' });
  const stop = async () => {
    many.kill();
    await g.stop();
  };
  try {
    await new Promise((r) => setTimeout(r, 500));
    const r = await fetch(`${g.base}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json', ...g.auth }, body: JSON.stringify({ name: 'many', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp` }) });
    if (r.status !== 201) throw new Error(`register: ${r.status}`);
    for (let i = 0; i < 100; i++) {
      const v = await (await fetch(`${g.base}/api/v1/servers/many`, { headers: g.auth })).json();
      if (v.status?.state === 'connected') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    const request = async (server) => {
      const url = `${g.base}/mcp/${server}`;
      if (era !== 'legacy') return { url, headers: modernHeaders('tools/list', undefined, g.auth), body: modernList };
      const init = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT, ...g.auth }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }) });
      await init.text();
      return { url, headers: { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id'), ...g.auth }, body: list };
    };
    const reqs = { 5: await request('echo'), 200: await request('many') };
    const bodies = {};
    for (const k of [5, 200]) bodies[k] = await (await fetch(reqs[k].url, { method: 'POST', headers: reqs[k].headers, body: reqs[k].body })).text();
    for (const k of [5, 200]) await autocannon({ ...reqs[k], method: 'POST', connections: 32, duration: 2 });
    return { dir, pid: g.child.pid, reqs, bodies, stop, totals: { 5: [], 200: [] } };
  } catch (error) {
    await stop();
    throw error;
  }
}

const runs = [];
try {
  for (const dir of dirs) runs.push(await setUp(dir));
  for (const k of [5, 200]) if (runs.some((r) => r.bodies[k] !== runs[0].bodies[k])) console.log(`the ${k}-tool answers differ between builds!`);
  for (let round = 0; round < ROUNDS; round++) {
    for (const run of round % 2 ? [...runs].reverse() : runs) {
      for (const k of [5, 200]) {
        const a = cpu(run.pid);
        const res = await autocannon({ ...run.reqs[k], method: 'POST', connections: 32, amount: N });
        const b = cpu(run.pid);
        if (res.non2xx || res.errors) console.log(`${res.non2xx} non-2xx, ${res.errors} errors!`);
        const user = (b.user - a.user) / N;
        const sys = (b.sys - a.sys) / N;
        const faults = (b.faults - a.faults) / N;
        run.totals[k].push({ user, sys });
        console.log(`${run.dir} ${era} ${k} tools (${run.bodies[k].length} B): ${(user + sys).toFixed(1)} µs/req (user ${user.toFixed(1)}, sys ${sys.toFixed(1)}), ${faults.toFixed(2)} page faults/req, ${Math.round(res.requests.average)} req/s`);
      }
    }
  }
  const median = (xs) => [...xs].sort((x, y) => x - y)[xs.length >> 1];
  for (const run of runs) {
    const m = (k, f) => median(run.totals[k].map(f));
    const t = (k) => m(k, (x) => x.user + x.sys);
    console.log(`${run.dir} ${era} medians: 5 tools ${t(5).toFixed(1)} µs (user ${m(5, (x) => x.user).toFixed(1)}, sys ${m(5, (x) => x.sys).toFixed(1)}); 200 tools ${t(200).toFixed(1)} µs (user ${m(200, (x) => x.user).toFixed(1)}, sys ${m(200, (x) => x.sys).toFixed(1)}); ratio ${(t(200) / t(5)).toFixed(2)}`);
  }
} finally {
  for (const run of runs) await run.stop();
}
