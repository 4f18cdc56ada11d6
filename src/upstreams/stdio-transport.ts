import type { ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { ReadBuffer, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/client';
import { DescribedError } from './error-description.js';
import { nodeSpawner, type ProcessSpawner } from './process-spawner.js';

export interface StdioProcessOptions {
  command: string;
  args: string[];
  env: Record<string, string>;
  cwd?: string;
  /** Lines the server writes to stderr (its logs), for diagnostics: whole characters, at most {@link MAX_STDERR_LINE} each. */
  onStderr?: (line: string) => void;
  /** Grace period between SIGTERM and SIGKILL on close. */
  killAfterMs?: number;
  /** Starts the process (default: `node:child_process.spawn`). */
  spawner?: ProcessSpawner;
}

/** Longest stderr line handed to `onStderr` (characters); the rest of a longer line is dropped. */
export const MAX_STDERR_LINE = 64 * 1024;

/** Variables a stdio server inherits from Gatehouse; everything else it gets only from its config. */
const INHERITED_ENV = ['PATH', 'HOME', 'LANG', 'LC_ALL', 'TZ', 'TMPDIR', 'USER', 'LOGNAME', 'SHELL', 'TERM', 'NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE'];

/**
 * An MCP client transport over a child process's stdin/stdout, like the SDK's
 * `StdioClientTransport`, but the child leads its own process group and closing kills the
 * whole group (SIGTERM, then SIGKILL): `npx`-style launchers and shells otherwise leave the
 * real server running as an orphan. Gatehouse's own environment (database URL, keys) is not
 * passed on, only a short list of harmless variables plus the server's configured `env`.
 */
export class ProcessGroupStdioTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;

  private child: ChildProcess | undefined;
  private readonly buffer = new ReadBuffer();
  private exited: Promise<void> | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Writes not yet flushed to the child's stdin: settled (rejected) if the child goes away first. */
  private readonly pendingWrites = new Set<(error: Error) => void>();
  private gone: Error | undefined;

  constructor(private readonly options: StdioProcessOptions) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  start(): Promise<void> {
    if (this.child) throw new DescribedError('ProcessGroupStdioTransport already started');
    // Host variables passed on to the child process, not configuration read by Gatehouse.
    // eslint-disable-next-line no-restricted-properties
    const inherited = Object.fromEntries(INHERITED_ENV.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]!]));
    return new Promise((resolve, reject) => {
      const child = (this.options.spawner ?? nodeSpawner)(this.options.command, this.options.args, {
        cwd: this.options.cwd,
        env: { ...inherited, ...this.options.env },
        stdio: ['pipe', 'pipe', 'pipe'],
        detached: true, // own process group, so close() can signal the whole tree
        windowsHide: true,
      });
      this.child = child;
      this.exited = new Promise((done) => child.once('exit', () => done()));
      child.once('error', (error) => {
        reject(error);
        this.onerror?.(error);
      });
      child.once('spawn', () => resolve());
      child.once('exit', (code, signal) => {
        this.failWrites(new DescribedError(`process exited (${signal ?? `code ${code}`}) before reading the message`));
        if (!this.closing) this.onerror?.(new DescribedError(`process exited (${signal ?? `code ${code}`})`));
        this.onclose?.();
      });
      child.stdout!.on('data', (chunk: Buffer) => {
        this.buffer.append(chunk);
        for (;;) {
          let message: JSONRPCMessage | null;
          try {
            message = this.buffer.readMessage();
          } catch (error) {
            this.onerror?.(error as Error);
            continue;
          }
          if (!message) break;
          this.onmessage?.(message);
        }
      });
      child.stdin!.on('error', (error) => {
        this.failWrites(error);
        this.onerror?.(error);
      });
      child.stdin!.on('close', () => this.failWrites(new DescribedError('process stdin closed before the message was read')));
      // Lines are decoded across chunk boundaries (a character split between two chunks stays
      // whole, so masking still recognizes a value holding it) and bounded: past
      // MAX_STDERR_LINE characters the rest of a line is dropped, never emitted as a new line
      // (which would start with the unmasked remainder of a value cut at the bound).
      const decoder = new StringDecoder('utf8');
      let pending = '';
      let overflow = false;
      child.stderr!.on('data', (chunk: Buffer) => {
        const text = decoder.write(chunk);
        for (let start = 0; ; ) {
          const newline = text.indexOf('\n', start);
          if (!overflow) {
            pending += text.slice(start, newline < 0 ? undefined : newline);
            if (pending.length > MAX_STDERR_LINE) {
              pending = pending.slice(0, MAX_STDERR_LINE);
              overflow = true;
            }
          }
          if (newline < 0) break;
          if (pending.trim()) this.options.onStderr?.(pending);
          pending = '';
          overflow = false;
          start = newline + 1;
        }
      });
    });
  }

  /**
   * Writes one message to the child's stdin. Resolves once the stream accepted it (at once, or
   * after `drain` when the pipe is full); rejects if the process is not running, or exits, or its
   * stdin errors or closes before the write was flushed — a pending write never hangs.
   */
  send(message: JSONRPCMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      const stdin = this.child?.stdin;
      if (this.gone || !stdin || stdin.destroyed || !stdin.writable) {
        reject(this.gone ?? new DescribedError('process is not running'));
        return;
      }
      let settled = false;
      const settle = (error?: Error | null) => {
        if (settled) return;
        settled = true;
        this.pendingWrites.delete(fail);
        stdin.off('drain', onDrain);
        if (error) reject(error);
        else resolve();
      };
      const fail = (error: Error) => settle(error);
      const onDrain = () => settle();
      this.pendingWrites.add(fail);
      // The callback reports an error for a write the stream could not flush.
      const flushed = stdin.write(serializeMessage(message), (error) => {
        if (error) settle(error);
      });
      if (flushed) settle();
      else stdin.once('drain', onDrain);
    });
  }

  /** Rejects every write still waiting for the child: it will never read them. */
  private failWrites(error: Error): void {
    this.gone ??= error;
    for (const fail of [...this.pendingWrites]) fail(error);
  }

  /**
   * Stops the process group (SIGTERM, SIGKILL after `killAfterMs`) and resolves once the leader
   * has exited. Every call returns the same promise; a child that never started (spawn error,
   * no pid) has nothing to wait for.
   */
  close(): Promise<void> {
    this.closed ??= this.stop();
    return this.closed;
  }

  private async stop(): Promise<void> {
    const child = this.child;
    this.closing = true;
    this.buffer.clear();
    this.failWrites(new DescribedError('the connection is closing'));
    if (child && child.exitCode === null && child.signalCode === null && child.pid) {
      child.stdin?.end();
      signalGroup(child.pid, 'SIGTERM');
      const timer = setTimeout(() => signalGroup(child.pid!, 'SIGKILL'), this.options.killAfterMs ?? 2_000);
      await this.exited;
      clearTimeout(timer);
      // The leader is gone; make sure nothing it started survives it.
      signalGroup(child.pid, 'SIGKILL');
    }
  }
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is already gone
  }
}
