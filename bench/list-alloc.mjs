// Bytes allocated per tools/list of a 200-tool upstream (/mcp/many) in Gatehouse (V8's sampling heap
// profiler, objects collected by GC included; a Buffer's bytes outside the V8 heap are not counted),
// grouped by allocating function (or by the last STACK frames). TOOLS=5 lists /mcp/echo instead.
// Adapted from /work/tools/alloc.mjs (tools/call). Run from a checkout with node_modules:
//   node bench/list-alloc.mjs <legacy|modern> <dir with built dist> [requests=20000]   (TOP=40, STACK=0)
// Needs TEST_DATABASE_URL. Numbers are statistical (1 KB sampling interval): compare totals of ±3 %.
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
const era = process.argv[2] ?? 'legacy';
const dir = resolve(process.argv[3] ?? '.');
const N = Number(process.argv[4] ?? 20000);
const out = `/tmp/heap-${process.pid}.json`;
const { launchGatehouse, GATEHOUSE_NODE_FLAGS, freePort, ACCEPT, LEGACY, list, modernHeaders, modernList } = await import(pathToFileURL(resolve('bench/harness.mjs')).href);
const { spawn } = await import('node:child_process');
const { default: autocannon } = await import(pathToFileURL(resolve('node_modules/autocannon/autocannon.js')).href);
const preload = `/tmp/heapsample-${process.pid}.mjs`;
writeFileSync(preload, `import { Session } from 'node:inspector'; import { writeFileSync } from 'node:fs';
const s = new Session(); s.connect();
process.on('SIGUSR2', () => s.post('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }));
process.on('SIGUSR1', () => s.post('HeapProfiler.stopSampling', (e, r) => writeFileSync(${JSON.stringify(out)}, JSON.stringify(r.profile))));`);
const g = await launchGatehouse({ dir, nodeArgs: [...GATEHOUSE_NODE_FLAGS, '--import', preload] });
const port = await freePort();
const many = spawn(process.execPath, ['bench/echo-upstream.mjs'], { env: { ...process.env, PORT: String(port), TOOLS: '200' }, stdio: 'ignore' });
const server = process.env.TOOLS === '5' ? 'echo' : 'many';
let headers;
let body;
try {
  await new Promise((r) => setTimeout(r, 500));
  const reg = await fetch(`${g.base}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json', ...g.auth }, body: JSON.stringify({ name: 'many', transport: 'streamable_http', url: `http://127.0.0.1:${port}/mcp` }) });
  if (reg.status !== 201) throw new Error(`register: ${reg.status}`);
  for (let i = 0; i < 100; i++) {
    const v = await (await fetch(`${g.base}/api/v1/servers/many`, { headers: g.auth })).json();
    if (v.status?.state === 'connected') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  if (era === 'legacy') {
    const init = await fetch(`${g.base}/mcp/${server}`, { method: 'POST', headers: { 'content-type': 'application/json', accept: ACCEPT, ...g.auth }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'bench', version: '1' } } }) });
    await init.text();
    headers = { 'content-type': 'application/json', accept: ACCEPT, 'mcp-protocol-version': LEGACY, 'mcp-session-id': init.headers.get('mcp-session-id'), ...g.auth };
    body = list;
  } else {
    headers = modernHeaders('tools/list', undefined, g.auth);
    body = modernList;
  }
  await autocannon({ url: `${g.base}/mcp/${server}`, method: 'POST', headers, body, connections: 32, duration: 2 });
  process.kill(g.child.pid, 'SIGUSR2');
  await new Promise((r) => setTimeout(r, 200));
  const r = await autocannon({ url: `${g.base}/mcp/${server}`, method: 'POST', headers, body, connections: 32, amount: N });
  if (r.non2xx) console.log(`${r.non2xx} non-2xx answers!`);
  process.kill(g.child.pid, 'SIGUSR1');
  await new Promise((r) => setTimeout(r, 2000));
} finally { many.kill(); await g.stop(); }
const p = JSON.parse(readFileSync(out, 'utf8'));
const bySample = new Map();
for (const s of p.samples) bySample.set(s.nodeId, (bySample.get(s.nodeId) ?? 0) + s.size);
const self = new Map(); let total = 0;
const walk = (n, stack) => {
  const f = n.callFrame; const url = f.url.replace(/^file:\/\//, '').replace(/.*\/node_modules\//, '').replace(/.*\/dist\//, '');
  const l = `${f.functionName || '(anon)'} ${url}:${f.lineNumber + 1}`;
  const sz = bySample.get(n.id) ?? 0;
  if (sz) { total += sz; const key = Number(process.env.STACK ?? 0) ? [...stack.slice(-Number(process.env.STACK)), l].join(' < ') : l; self.set(key, (self.get(key) ?? 0) + sz); }
  for (const c of n.children) walk(c, [...stack, l]);
};
walk(p.head, []);
console.log(`${era} ${dir}: ${(total / N / 1024).toFixed(1)} KB allocated per tools/list (${server})`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.TOP ?? 40))) console.log(`${(v / N).toFixed(0).padStart(7)} B  ${k}`);
