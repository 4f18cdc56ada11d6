// Runs the whole suite (unit, integration, end-to-end) with Node's test runner against a real
// PostgreSQL: TEST_DATABASE_URL or DATABASE_URL when set (a server URL; each test file creates
// and drops its own database on it), otherwise an embedded PostgreSQL started for this run.
// Extra arguments are passed to `node --test` (e.g. a file path or --test-name-pattern).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// A port for the embedded PostgreSQL, drawn outside the kernel's ephemeral range (where an
// outgoing connection could take it between this check and PostgreSQL's own listen).
const canListen = (port) =>
  new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
async function freePort() {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux
  }
  for (let i = 0; i < 200; i++) {
    const port = 10_000 + Math.floor(Math.random() * (Math.max(11_000, low) - 10_001));
    if (await canListen(port)) return port;
  }
  throw new Error('no free port for the embedded PostgreSQL');
}

let url = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
let embedded;
if (!url) {
  const { startEmbeddedPostgres } = await import('../dist/src/database/embedded-postgres.js');
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-test-'));
  chmodSync(root, 0o755); // as root, PostgreSQL runs as the postgres user, who must reach its data directory
  const dir = join(root, 'postgres');
  const port = await freePort();
  process.stdout.write(`no TEST_DATABASE_URL or DATABASE_URL: starting an embedded PostgreSQL on port ${port}\n`);
  embedded = await startEmbeddedPostgres({ dir, port, database: 'postgres', persistent: false });
  url = embedded.url;
}

const args = process.argv.slice(2);
const files = args.some((a) => !a.startsWith('-')) ? [] : ['dist/test/**/*.test.js', 'dist/src/**/*.spec.js'];
const child = spawn(
  process.execPath,
  ['--test', '--test-reporter=spec', '--test-concurrency=3', '--test-timeout=180000', ...args, ...files],
  { stdio: 'inherit', env: { ...process.env, TEST_DATABASE_URL: url, DATABASE_URL: '' } },
);
const code = await new Promise((resolve) => child.on('exit', (c, signal) => resolve(c ?? (signal ? 1 : 0))));
await embedded?.stop();
process.exit(code);
