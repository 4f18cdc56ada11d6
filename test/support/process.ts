import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';

/** Ports this process handed out (never twice, even after they were freed). */
const handedOut = new Set<number>();

/** The kernel's ephemeral range (Linux `ip_local_port_range`), which `listen(0)` and every outgoing connection draw from. */
export function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low > 0 && high >= low) return [low, high];
  } catch {
    // not Linux: the IANA dynamic range
  }
  return [49152, 65535];
}

/** Whether a listener could bind `port` on 127.0.0.1 right now (it binds and closes at once). */
export const canListen = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });

/**
 * Ports `fetch` refuses to connect to (the Fetch Standard's "bad ports", §2.9 Port blocking,
 * https://fetch.spec.whatwg.org/#port-blocking): Node's fetch (undici) and Chromium fail any
 * request to them as a network error. CI once failed when a Gatehouse was started on 10080 and its
 * `/readyz` "answered 0" for 60 s.
 */
export const FETCH_BAD_PORTS: ReadonlySet<number> = new Set([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123,
  135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990, 993, 995,
  1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/**
 * A TCP port on 127.0.0.1 that is free now, for a listener a test starts later (a child
 * process's `PORT`, an issuer URL that must be known before the app starts).
 *
 * Drawn at random from 10000..(ephemeral low − 1), never from the kernel's ephemeral range: a
 * port there can be taken between our check and the real `listen` by any outgoing connection of
 * the parallel test processes (CI once failed with EADDRINUSE on exactly that). Outside it only
 * another explicit `listen` can take it, and the random draw makes that unlikely; a port is never
 * handed out twice by one process, nor one of {@link FETCH_BAD_PORTS}. `random`: the draw (tests). Listeners that can take any port use `listen(0)` instead.
 */
export async function freePort(random: () => number = Math.random): Promise<number> {
  const [low] = ephemeralRange();
  const floor = 10_000;
  const ceiling = Math.max(floor + 1_000, low) - 1;
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = floor + Math.floor(random() * (ceiling - floor));
    if (handedOut.has(port) || FETCH_BAD_PORTS.has(port)) continue;
    handedOut.add(port);
    if (await canListen(port)) return port;
  }
  throw new Error(`no free port in ${floor}..${ceiling} after 200 tries`);
}

/** Every Gatehouse process a test started and has not seen exit. */
const live = new Set<ChildProcess>();

/**
 * Kills whatever a test file left running (a failed assertion skips its own stop): call it in
 * the file's `after`, or the test process waits on the child until the runner's timeout.
 */
export async function stopAllGatehouses(): Promise<void> {
  await Promise.all(
    [...live].map(
      (child) =>
        new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGKILL');
        }),
    ),
  );
}

export interface GatehouseProcess {
  child: ChildProcess;
  url: string;
  stdout(): string;
  stderr(): string;
  /** Parsed JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** Sends a signal and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A fixed key ring for tests (production refuses to start without one). */
export const TEST_ENCRYPTION_KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

/**
 * Runs `node dist/main.js` as a real process with only the given environment (no `.env`),
 * and waits until it logs that it listens. `cwd`: its working directory (relative defaults
 * such as `./.data` resolve there); the repository by default.
 */
export async function spawnGatehouse(env: Record<string, string>, timeoutMs = 60_000, cwd?: string): Promise<GatehouseProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, [resolve('dist/main.js')], {
    cwd,
    env: { PATH: process.env.PATH, NODE_ENV: 'production', GATEHOUSE_ENV_FILE: '/nonexistent', GATEHOUSE_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS, PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  // 'close', not 'exit': by then stdout is fully read, so the last log lines are there.
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  const logs = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  const deadline = Date.now() + timeoutMs;
  while (!logs().some((l) => typeof l.msg === 'string' && l.msg.startsWith('Gatehouse listening'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`gatehouse did not start (exit ${child.exitCode}):\n${out}\n${err}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    stdout: () => out,
    stderr: () => err,
    logs,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `url` until it answers `status`. */
export async function waitForStatus(url: string, status: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const got = await fetch(url).then(
      (r) => r.status,
      () => 0,
    );
    if (got === status) return;
    if (Date.now() > deadline) throw new Error(`${url} answered ${got}, not ${status}, within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
