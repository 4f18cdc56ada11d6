// What an idle legacy session costs Gatehouse's memory. Starts Gatehouse as teams run it
// (NODE_ENV=production, LOG_LEVEL=info unless BENCH_LOG_LEVEL, an API key) with the inspector on
// a loopback port, opens and ends N sessions first (so the heap has grown for that work), then
// opens N sessions (`initialize` + `notifications/initialized`) and leaves them open. Before and
// after, it forces full collections through the inspector (`HeapProfiler.collectGarbage`) and
// reads `process.memoryUsage()` inside Gatehouse: heap used then is what the sessions retain.
// After the opens it also reads it first as a process monitor would (2 s after the last request,
// garbage V8 has not collected yet included — what `npm run bench` reports as RSS growth).
// ALLOCATIONS=1: also prints what opening one session allocates, by function (a sampling heap
// profile of the N opens, collected objects included).
// Usage: node bench/idle-sessions.mjs [N=1000] [distDir=.]   (TEST_DATABASE_URL)
//   SNAPSHOTS=dir: also writes a heap snapshot before and after into dir (compare them in Chrome
//   DevTools' Memory tab, "Comparison" view).
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { freePort, GATEHOUSE_NODE_FLAGS, launchGatehouse, LEGACY, ACCEPT } from './harness.mjs';

const N = Number(process.argv[2] ?? 1000);
const DIST = resolve(process.argv[3] ?? '.');
const SNAPSHOTS = process.env.SNAPSHOTS ? resolve(process.env.SNAPSHOTS) : undefined;

/** A minimal Chrome DevTools Protocol client over the inspector's WebSocket. */
async function inspector(url) {
  const ws = new WebSocket(url);
  await new Promise((res, rej) => {
    ws.onopen = res;
    ws.onerror = rej;
  });
  let next = 1;
  const pending = new Map();
  ws.onmessage = (m) => {
    const msg = JSON.parse(m.data);
    if (msg.id && pending.has(msg.id)) {
      const { res, rej } = pending.get(msg.id);
      pending.delete(msg.id);
      if (msg.error) rej(new Error(msg.error.message));
      else res(msg.result);
    }
  };
  const send = (method, params = {}) =>
    new Promise((res, rej) => {
      const id = next++;
      pending.set(id, { res, rej });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const evaluate = async (expression) => (await send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })).result.value;
  return { send, evaluate, close: () => ws.close() };
}

// `young`: V8's young generation (new space), which grows to its maximum (2 × 16 MB semi-spaces
// on 64-bit Node 22) under sustained allocation of any kind and shrinks only at a full collection.
const usage =
  "({ heap: process.memoryUsage().heapUsed, total: process.memoryUsage().heapTotal, rss: process.memoryUsage().rss, young: process.getBuiltinModule('node:v8').getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size })";

/**
 * Memory (bytes) two ways: `seen`, as a process monitor sees it 2 s after the last request (no
 * forced collection: garbage V8 has not yet collected counts); `retained`, after full collections
 * repeated until the heap stops shrinking (what the sessions actually hold).
 */
async function measure(cdp) {
  await new Promise((r) => setTimeout(r, 2000));
  const seen = await cdp.evaluate(usage);
  let retained = { heap: Infinity };
  for (let i = 0; i < 6; i++) {
    await cdp.send('HeapProfiler.collectGarbage');
    await new Promise((r) => setTimeout(r, 200));
    const m = await cdp.evaluate(usage);
    const done = m.heap >= retained.heap - 4096;
    retained = m;
    if (done) break;
  }
  return { seen, retained };
}

/** Bytes allocated per session by function (self and inclusive), from a sampling heap profile. */
function printAllocations(profile) {
  const self = new Map();
  const incl = new Map();
  const label = (n) => `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*\/node_modules\//, '').replace(/.*\/dist\//, '')}:${n.callFrame.lineNumber + 1}`;
  const walk = (node, stack) => {
    const l = label(node);
    const here = [...stack, l];
    const size = node.selfSize;
    self.set(l, (self.get(l) ?? 0) + size);
    for (const k of new Set(here)) incl.set(k, (incl.get(k) ?? 0) + size);
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head, []);
  const top = (m, n) => [...m].sort((a, b) => b[1] - a[1]).slice(0, n).map(([k, v]) => `  ${Math.round(v / N).toString().padStart(8)} B  ${k}`).join('\n');
  process.stdout.write(`allocated per session, self:\n${top(self, 25)}\ninclusive:\n${top(incl, 60)}\n`);
}

async function openSession(base, auth) {
  const headers = { 'content-type': 'application/json', accept: ACCEPT, ...auth };
  const init = await fetch(`${base}/mcp`, { method: 'POST', headers, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: LEGACY, capabilities: {}, clientInfo: { name: 'idle', version: '1' } } }) });
  await init.text();
  if (init.status !== 200) throw new Error(`initialize: ${init.status}`);
  const id = init.headers.get('mcp-session-id');
  const note = await fetch(`${base}/mcp`, { method: 'POST', headers: { ...headers, 'mcp-session-id': id, 'mcp-protocol-version': LEGACY }, body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) });
  await note.text();
  if (note.status !== 202) throw new Error(`notifications/initialized: ${note.status}`);
  return id;
}

const pInspect = await freePort();
const { base, auth, stop } = await launchGatehouse({ dir: DIST, nodeArgs: [...GATEHOUSE_NODE_FLAGS, `--inspect=127.0.0.1:${pInspect}`], stderr: 'ignore' });
try {
  const [{ webSocketDebuggerUrl }] = await (await fetch(`http://127.0.0.1:${pInspect}/json/list`)).json();
  const cdp = await inspector(webSocketDebuggerUrl);
  const snapshot = async (name) => {
    if (!SNAPSHOTS) return;
    mkdirSync(SNAPSHOTS, { recursive: true });
    const file = `${SNAPSHOTS}/${name}.heapsnapshot`;
    await cdp.evaluate(`process.getBuiltinModule('node:v8').writeHeapSnapshot(${JSON.stringify(file)})`);
    process.stdout.write(`  heap snapshot: ${file}\n`);
  };

  // Warm-up: open and end N sessions, so caches, JIT and pools have grown for this work.
  for (let i = 0; i < N; i++) {
    const id = await openSession(base, auth);
    await (await fetch(`${base}/mcp`, { method: 'DELETE', headers: { ...auth, 'mcp-session-id': id, 'mcp-protocol-version': LEGACY } })).text();
  }
  const before = await measure(cdp);
  await snapshot('before');
  const sampling = process.env.ALLOCATIONS === '1';
  if (sampling) await cdp.send('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  for (let i = 0; i < N; i++) await openSession(base, auth);
  if (sampling) printAllocations((await cdp.send('HeapProfiler.stopSampling')).profile);
  const after = await measure(cdp);
  await snapshot('after');
  const mb = (b) => (b / 1048576).toFixed(1);
  // Both from the collected heap before the N opens: `seen` is what they grew the process by.
  const delta = (at, k) => `${mb(before.retained[k])} → ${mb(after[at][k])} MB (${Math.round((after[at][k] - before.retained[k]) / N)} bytes/session)`;
  process.stdout.write(
    `${N} idle legacy sessions (${DIST}):\n` +
      `  retained (after full GC): heap used ${delta('retained', 'heap')}, RSS ${delta('retained', 'rss')}\n` +
      `  as a monitor sees it (2 s later, no forced GC): heap used ${delta('seen', 'heap')}, heap total ${delta('seen', 'total')}, RSS ${delta('seen', 'rss')}\n` +
      `    of which V8's young generation (new space): ${mb(before.retained.young)} → ${mb(after.seen.young)} MB\n`,
  );
  cdp.close();
} finally {
  await stop();
}
