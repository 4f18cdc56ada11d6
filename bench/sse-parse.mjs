// Times HttpForwarder reading one large tools/call result streamed as SSE, the path every
// 2025-era streamable-HTTP upstream call takes. `node bench/sse-parse.mjs [distDir]` (default
// ./dist; pass another build's dist to compare). Env: SIZE (bytes of result text, default
// 1 MiB), ROUNDS (default 40), SLICE (bytes per write, default 16 KiB; 0: one write),
// EOL (lf|crlf), TEXT (ascii|utf8).
import { createServer } from 'node:http';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const dist = resolve(process.argv[2] ?? 'dist');
const { HttpForwarder } = await import(pathToFileURL(`${dist}/src/upstreams/http-forwarder.js`).href);
const size = Number(process.env.SIZE ?? 1024 * 1024);
const rounds = Number(process.env.ROUNDS ?? 40);
const slice = Number(process.env.SLICE ?? 16 * 1024);
const eol = process.env.EOL === 'crlf' ? '\r\n' : '\n';
const text = process.env.TEXT === 'utf8' ? 'é'.repeat(size / 2) : 'x'.repeat(size);

const server = createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c)).on('end', () => {
    const { id } = JSON.parse(Buffer.concat(chunks).toString());
    const body = Buffer.from(`event: message${eol}data: ${JSON.stringify({ jsonrpc: '2.0', id, result: { content: [{ type: 'text', text }] } })}${eol}${eol}`);
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (slice <= 0) return res.end(body);
    for (let at = 0; at < body.length; at += slice) res.write(body.subarray(at, at + slice));
    res.end();
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const forwarder = new HttpForwarder(new URL(`http://127.0.0.1:${server.address().port}/mcp`), {}, '2025-06-18', 's');
const call = () => forwarder.request('tools/call', { name: 'big' }, { timeoutMs: 60_000 });
for (let i = 0; i < 5; i++) await call(); // warm-up
const times = [];
let ok = 0;
const rss0 = process.memoryUsage().rss;
for (let i = 0; i < rounds; i++) {
  const started = performance.now();
  const result = await call().catch((e) => e);
  times.push(performance.now() - started);
  if (result?.content?.[0]?.text === text) ok++;
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
console.log(JSON.stringify({ dist, size, slice, eol: eol === '\n' ? 'lf' : 'crlf', text: process.env.TEXT ?? 'ascii', rounds, correct: ok, medianMs: +median.toFixed(2), p90Ms: +times[Math.floor(times.length * 0.9)].toFixed(2), MBps: +(size / 1e6 / (median / 1000)).toFixed(1), rssGrowthMB: +((process.memoryUsage().rss - rss0) / 1e6).toFixed(1) }));
await forwarder.close();
server.close();
