import type { ChildProcess } from 'node:child_process';
import { StringDecoder } from 'node:string_decoder';
import { deserializeMessage, serializeMessage, type JSONRPCMessage, type Transport } from '@modelcontextprotocol/client';
import { DescribedError } from './error-description.js';
import { nodeSpawner, type ProcessSpawner } from './process-spawner.js';
import { DEFAULT_MAX_MESSAGE_BYTES, LineFramer, oversizedResponseId, type Frame } from './stdio-framing.js';

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
  /** Longest message accepted from the process, in bytes (GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE; default 32 MiB). */
  maxMessageBytes?: number;
  /** What set `maxMessageBytes`, as the too-large error names it (default GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE). */
  maxMessageSetBy?: string;
  /** The server's name, for errors the caller sees ("server X sent…"). */
  serverName?: string;
  /** ms between the process closing its stdout and the transport ending, if the process has not exited by then. */
  stdoutGraceMs?: number;
}

/** Stderr lines kept for {@link ProcessEndedError} (the last ones before the end). */
const LAST_STDERR_LINES = 3;
/** Characters of each kept stderr line. */
const LAST_STDERR_CHARS = 300;

/**
 * Why an stdio upstream's connection ended on its own: the process exited (code or signal), or
 * it closed its stdout while still running. Its message carries the process's last stderr
 * lines — the upstream's words, which may quote configured values: the connection masks it
 * (`UpstreamConnection.mask`) before it is shown anywhere.
 */
export class ProcessEndedError extends DescribedError {}

/** An stdio upstream wrote one message larger than the configured bound; it was dropped. */
export class MessageTooLargeError extends DescribedError {
  constructor(
    readonly bytes: number,
    readonly maxBytes: number,
    server: string | undefined,
    setBy = 'GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE',
  ) {
    super(`${server ? `server "${server}"` : 'the server'} sent a message of more than ${formatBytes(maxBytes)} (${bytes} bytes), over ${setBy}; dropped`);
  }
}

/** `32 MiB`, `1.5 KiB`, `100 bytes`. */
export function formatBytes(bytes: number): string {
  for (const [unit, size] of [['GiB', 1024 ** 3], ['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (bytes >= size) return `${Number((bytes / size).toFixed(1))} ${unit}`;
  }
  return `${bytes} bytes`;
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
  private readonly framer: LineFramer;
  private readonly lastStderr: string[] = [];
  private ended = false;
  private stdoutTimer: NodeJS.Timeout | undefined;
  /** Why the connection ended on its own (exit, stdout closed); undefined while running or after {@link close}. */
  endReason: Error | undefined;
  private exited: Promise<void> | undefined;
  private closing = false;
  private closed: Promise<void> | undefined;
  /** Writes not yet flushed to the child's stdin: settled (rejected) if the child goes away first. */
  private readonly pendingWrites = new Set<(error: Error) => void>();
  private gone: Error | undefined;

  constructor(private readonly options: StdioProcessOptions) {
    this.framer = new LineFramer(options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES);
  }

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
        clearTimeout(this.stdoutTimer);
        this.failWrites(new DescribedError(`process exited (${signal ?? `code ${code}`}) before reading the message`));
        this.end(new ProcessEndedError(`process exited (${signal ? `signal ${signal}` : `code ${code}`})${this.stderrTail()}`));
      });
      child.stdout!.on('data', (chunk: Buffer) => {
        for (const frame of this.framer.push(chunk)) this.deliver(frame);
      });
      // stdout EOF is the connection's end (MCP stdio: the server talks only there), even if
      // the process keeps running: it is killed and reconnected rather than left `connected`
      // with every call waiting out its timeout. A process that is exiting anyway closes its
      // stdout first: the grace lets its exit code be the reported cause.
      child.stdout!.once('end', () => {
        if (this.closing || this.ended) return;
        this.stdoutTimer = setTimeout(() => {
          this.end(new ProcessEndedError(`process closed its stdout but kept running (killed)${this.stderrTail()}`));
          if (child.pid) signalGroup(child.pid, 'SIGKILL');
        }, this.options.stdoutGraceMs ?? 250);
        this.stdoutTimer.unref?.();
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
          if (pending.trim()) this.noteStderr(pending);
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

  /**
   * Hands one frame to the client: a message; nothing (with `onerror`) for a line that is not
   * JSON-RPC; for a line over the bound, `onerror` and — when it was a response whose id can be
   * told — an error response to that request, so its caller fails at once, not at its timeout.
   */
  private deliver(frame: Frame): void {
    if (frame.kind === 'oversized') {
      const error = new MessageTooLargeError(frame.bytes, this.framer.maxBytes, this.options.serverName, this.options.maxMessageSetBy);
      this.onerror?.(error);
      const id = oversizedResponseId(frame.head, frame.tail);
      if (id !== undefined) this.onmessage?.({ jsonrpc: '2.0', id, error: { code: -32603, message: error.message } });
      return;
    }
    const text = frame.line.toString('utf8').replace(/\r$/, '');
    if (!text.trim()) return;
    let message: JSONRPCMessage;
    try {
      message = deserializeMessage(text);
    } catch (error) {
      this.onerror?.(new DescribedError(error instanceof SyntaxError ? `the server wrote a line that is not JSON (${frame.line.length} bytes); ignored` : `the server wrote JSON that is not a JSON-RPC message (${frame.line.length} bytes); ignored`));
      return;
    }
    this.onmessage?.(message);
  }

  private noteStderr(line: string): void {
    this.lastStderr.push(line.length > LAST_STDERR_CHARS ? `${line.slice(0, LAST_STDERR_CHARS)}…` : line);
    if (this.lastStderr.length > LAST_STDERR_LINES) this.lastStderr.shift();
    this.options.onStderr?.(line);
  }

  private stderrTail(): string {
    return this.lastStderr.length ? `; last stderr: ${this.lastStderr.map((l) => JSON.stringify(l)).join(' | ')}` : '';
  }

  /** Ends the connection once: records why (unless it is being closed on purpose) and reports the close. */
  private end(reason: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.framer.clear();
    if (!this.closing) {
      this.endReason = reason;
      this.onerror?.(reason);
    }
    this.onclose?.();
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
    clearTimeout(this.stdoutTimer);
    this.framer.clear();
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
