// Same-run comparison of several Gatehouse builds on the legacy fast path: each build (a directory
// with dist/, e.g. a git worktree of an earlier commit built with `npm run build`) runs on its own
// database against one fast HTTP upstream; alternating 5 s rounds of tools/call at 16 connections;
// medians of req/s and of Gatehouse CPU per request (utime+stime from /proc). As teams run it by
// default: NODE_ENV=production, LOG_LEVEL=info (BENCH_LOG_LEVEL), calls carrying an API key
// (BENCH_CREDENTIALS=none: without credentials). ERA=modern: 2026-07-28 requests instead of a
// legacy session.
// Usage: node bench/compare-builds.mjs /path/a:label-a /path/b:label-b[:node-flag,…] …   (ROUNDS=4, ERA, TEST_DATABASE_URL)
// A third field gives node flags for that build (default GATEHOUSE_NODE_FLAGS, as the Dockerfile;
// `none` for none), e.g. `.:hooks:none`.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import autocannon from 'autocannon';
import pg from 'pg';
import { freePort, GATEHOUSE_NODE_FLAGS, modernCall, modernHeaders } from './harness.mjs';
const ADMIN_URL = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
const dbUrl = (name) => { const u = new URL(ADMIN_URL); u.pathname = `/${name}`; return u.toString(); };
const builds = process.argv.slice(2); // dir:label
const upPort = await freePort();
const up = spawn(process.execPath, ['bench/echo-upstream.mjs'], { env: { ...process.env, PORT: String(upPort), TOOLS: '5' }, stdio: 'ignore' });
const KEY = 'k'.repeat(40);
const credentials = process.env.BENCH_CREDENTIALS === 'none' ? {} : { 'x-api-key': KEY };
const cpuUs = (pid) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(f[11]) + Number(f[12])) * 10_000; };
const targets = [];
for (const spec of builds) {
  const [dir, label, flags] = spec.split(':');
  const db = `gh_three_${label}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect(); await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`); await admin.query(`CREATE DATABASE ${db}`); await admin.end();
  const p = await freePort();
  const child = spawn(process.execPath, [...(flags === undefined ? GATEHOUSE_NODE_FLAGS : flags.split(',').filter((f) => f && f !== 'none')), `${dir}/dist/main.js`], { cwd: dir, env: { ...process.env, DATABASE_URL: dbUrl(db), PORT: String(p), NODE_ENV: 'production', LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'info', MCP_AUTH_STRATEGY: 'none,api_key', MCP_API_KEYS: KEY, HTTP_MAX_CONCURRENT_SESSIONS: '100000', GATEHOUSE_ENCRYPTION_KEYS: `k:${Buffer.alloc(32, 1).toString('base64')}` }, stdio: ['ignore', 'ignore', 'inherit'] });
  targets.push({ label, child, url: `http://127.0.0.1:${p}` });
}
for (const t of targets) {
  for (;;) { const r = await fetch(`${t.url}/readyz`).catch(() => undefined); if (r?.status === 200) break; await new Promise((r) => setTimeout(r, 200)); }
  const A = { 'x-api-key': KEY, 'content-type': 'application/json' };
  await fetch(`${t.url}/api/v1/servers`, { method: 'POST', headers: A, body: JSON.stringify({ name: 'echo', transport: 'streamable_http', url: `http://127.0.0.1:${upPort}/mcp` }) });
  for (let i = 0; i < 100; i++) { const v = await (await fetch(`${t.url}/api/v1/servers/echo`, { headers: A })).json(); if (v.status?.state === 'connected') break; await new Promise((r) => setTimeout(r, 100)); }
  const init = await fetch(`${t.url}/mcp`, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...credentials }, body: JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'b', version: '1' } } }) });
  await init.text();
  t.headers =
    process.env.ERA === 'modern'
      ? modernHeaders('tools/call', 'echo__echo', credentials)
      : { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', 'mcp-session-id': init.headers.get('mcp-session-id'), ...credentials };
  t.runs = [];
}
const body = process.env.ERA === 'modern' ? modernCall('echo__echo') : JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo__echo', arguments: { message: 'hello' } } });
const ROUNDS = Number(process.env.ROUNDS ?? 4);
for (let round = 0; round < ROUNDS; round++) {
  for (let k = 0; k < targets.length; k++) {
    const t = targets[(round + k) % targets.length];
    await autocannon({ url: `${t.url}/mcp`, method: 'POST', headers: t.headers, body, connections: 16, duration: 1 });
    const before = cpuUs(t.child.pid);
    const r = await autocannon({ url: `${t.url}/mcp`, method: 'POST', headers: t.headers, body, connections: 16, duration: 5 });
    t.runs.push({ rps: r.requests.average, cpu: (cpuUs(t.child.pid) - before) / r.requests.total, bad: r.non2xx + r.errors });
  }
}
const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];
for (const t of targets) console.log(t.label.padEnd(10), 'median', Math.round(median(t.runs.map((r) => r.rps))), 'req/s', median(t.runs.map((r) => r.cpu)).toFixed(0), 'µs CPU/req', 'bad', t.runs.reduce((a, r) => a + r.bad, 0));
for (const t of targets) t.child.kill('SIGTERM');
up.kill();
