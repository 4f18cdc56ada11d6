// Runs the whole suite (unit, integration, end-to-end) with Node's test runner against a real
// PostgreSQL: TEST_DATABASE_URL or DATABASE_URL when set (a server URL; each test file creates
// and drops its own database on it), otherwise an embedded PostgreSQL started for this run.
// Extra arguments are passed to `node --test` (e.g. a file path or --test-name-pattern).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let url = process.env.TEST_DATABASE_URL || process.env.DATABASE_URL;
let embedded;
if (!url) {
  const { startEmbeddedPostgres } = await import('../dist/src/database/embedded-postgres.js');
  // Outside the kernel's ephemeral range, as every port the tests choose (docs/development.md).
  const { freePort } = await import('../dist/test/support/process.js');
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
