import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/** An embedded PostgreSQL started by another (live) Gatehouse process, and how to reach it. */
export interface RunningEmbeddedPostgres {
  /** Connection URL with the data directory's password, for `database`. */
  url: string;
  dataDir: string;
  /** The postmaster's pid and TCP port, from `postmaster.pid`. */
  pid: number;
  port: number;
  /** The process that started it (a Gatehouse server). */
  ownerPid: number;
}

/** What {@link findRunningEmbeddedPostgres} asks of the machine; tests pass fakes. */
export interface ProcessTable {
  /** Parent pid of `pid`, or undefined when no such process runs. */
  parentOf(pid: number): Promise<number | undefined>;
  /** The command name (`/proc/<pid>/comm`) of `pid`, or '' if unknown. */
  commandOf(pid: number): Promise<string>;
}

/** Linux `/proc`, as `embedded-postgres.ts` reads it to tell an orphan from a live owner. */
export const procTable: ProcessTable = {
  async parentOf(pid) {
    try {
      // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses.
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return undefined;
    }
  },
  commandOf: async (pid) => (await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => '')).trim(),
};

/**
 * Finds the embedded PostgreSQL that a running Gatehouse server started on the data directory
 * `dir` (`EMBEDDED_POSTGRES_DIR`), so that the CLI can use it instead of starting a second
 * postmaster on the same directory, which PostgreSQL refuses. Reads the port from line 4 of
 * `<dir>/postmaster.pid` (PostgreSQL's own lock file: pid, data dir, start time, port, socket
 * dir, listen address, …) and the password from `<dir>.password`, the file the launcher keeps
 * beside the directory (mode 0600). The server listens on 127.0.0.1 only.
 *
 * Returns undefined when nothing runs there (no pid file, or a stale one) or when the
 * postmaster is an orphan of a Gatehouse that died (not started by a live `node` process other
 * than this one): the launcher stops orphans and starts its own.
 *
 * @throws Error when a server runs there but its password file is missing or unreadable, or its
 *   pid file names no port.
 */
export async function findRunningEmbeddedPostgres(
  dir: string,
  database: string,
  processes: ProcessTable = procTable,
): Promise<RunningEmbeddedPostgres | undefined> {
  const dataDir = resolve(dir);
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return undefined;
  const lines = (await readFile(pidFile, 'utf8').catch(() => '')).split('\n');
  const pid = Number(lines[0]);
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  const ownerPid = await processes.parentOf(pid);
  if (ownerPid === undefined) return undefined; // stale pid file
  if (ownerPid === process.pid || (await processes.commandOf(ownerPid)) !== 'node') return undefined;
  const port = Number(lines[3]);
  if (!Number.isInteger(port) || port <= 0 || port > 65_535) {
    throw new Error(`embedded PostgreSQL in ${dataDir} (pid ${pid}) is still starting: ${pidFile} names no port yet; try again`);
  }
  const passwordFile = `${dataDir}.password`;
  let password: string;
  try {
    password = (await readFile(passwordFile, 'utf8')).trim();
  } catch (error) {
    throw new Error(
      `embedded PostgreSQL in ${dataDir} is running (pid ${pid}, port ${port}) but its password file ${passwordFile} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}); run as the user that runs Gatehouse, or set DATABASE_URL`,
      { cause: error },
    );
  }
  if (!password) throw new Error(`embedded PostgreSQL in ${dataDir}: its password file ${passwordFile} is empty; set DATABASE_URL`);
  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(database)}`;
  return { url, dataDir, pid, port, ownerPid };
}
