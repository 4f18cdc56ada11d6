// CPU per access line (all threads: pino, the destination, libuv's thread pool, the kernel) for
// pino's default destination (sonic-boom 'utf8', asynchronous), sonic-boom in 'buffer' mode, and
// Gatehouse's LineDestination (src/common/logging/destination.ts), N lines per event-loop turn.
// Usage (after a build): node bench/log-destination.mjs <default|buffer|line> [linesPerTurn=3] > /dev/null
//   (or `| cat > /dev/null` for a pipe); run each a few times, alternating, and compare medians.
import { pino } from 'pino';
const { LineDestination } = await import(new URL('../dist/src/common/logging/destination.js', import.meta.url).href);
const [mode, perTurn = '3'] = process.argv.slice(2);
let dest;
if (mode === 'default') dest = pino.destination({ fd: 1 });
else if (mode === 'buffer') { dest = pino.destination({ fd: 1, contentMode: 'buffer' }); const w = dest.write; dest.write = function (s) { return w.call(this, Buffer.from(s)); }; }
else dest = new LineDestination(1);
void process.stdout.fd; // as pino's default: makes a pipe on fd 1 non-blocking
const logger = pino({ base: { service: 'gatehouse' }, timestamp: pino.stdTimeFunctions.isoTime, formatters: { level: (l) => ({ level: l }) } }, dest);
const rec = (i) => ({ requestId: '3f1c1a52-5f37-4f0e-9d55-6a1b7c9e2d10', req: { id: '3f1c1a52-5f37-4f0e-9d55-6a1b7c9e2d10', method: 'POST', url: '/mcp', headers: { 'user-agent': 'autocannon', 'content-type': 'application/json', 'content-length': '123', 'mcp-protocol-version': '2025-06-18', accept: 'application/json, text/event-stream' }, remoteAddress: '127.0.0.1' }, res: { statusCode: 200 }, responseTime: i % 7, principalId: 'api_key:env-0' });
const TURNS = 40000; const n = Number(perTurn);
const t0 = process.cpuUsage(); const w0 = performance.now();
let turn = 0;
await new Promise((resolve) => { const go = () => { for (let k = 0; k < n; k++) logger.info(rec(turn), 'request completed'); if (++turn < TURNS) setImmediate(go); else resolve(); }; go(); });
const c = process.cpuUsage(t0);
process.stderr.write(`${mode.padEnd(8)} ${n}/turn: ${((c.user + c.system) / (TURNS * n)).toFixed(2)} µs CPU/line (user ${(c.user / (TURNS * n)).toFixed(2)}, sys ${(c.system / (TURNS * n)).toFixed(2)}), wall ${((performance.now() - w0) * 1000 / (TURNS * n)).toFixed(2)} µs/line\n`);
