import { EventEmitter } from 'node:events';
import { write as writeLater, writeSync } from 'node:fs';

/** Largest chunk handed to one `write(2)`, in UTF-16 code units (pino's default destination writes at most 16 KiB at a time). */
const MAX_WRITE = 16 * 1024;
/** How long to wait before writing again to a descriptor that said EAGAIN/EBUSY (a full pipe), ms — sonic-boom's figure. */
const BUSY_RETRY_MS = 100;

const isBusy = (error: unknown) => {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === 'EAGAIN' || code === 'EBUSY';
};

/** Blocks the thread for `ms` (only {@link LineDestination.flushSync} does, as sonic-boom's does on EAGAIN). */
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Destinations with something that may still need writing when the process exits. */
const live = new Set<WeakRef<LineDestination>>();
let exitHooked = false;
/** Whether the process is exiting (the 'exit' event was emitted): lines are then written at once. */
let exiting = false;

/**
 * A pino destination for newline-terminated log lines on a file descriptor (stdout: a pipe, a
 * file or a terminal), written at the end of the event-loop turn that produced them: the lines
 * of one turn go out in one `write(2)` (at most ~16 KiB each), synchronously, on the main thread.
 * Lines are written complete, in order, byte for byte as given.
 *
 * Why not pino's default destination (sonic-boom, asynchronous): each of its writes is handed to
 * libuv's thread pool and its completion back to the loop — measured ~13 µs of CPU per write
 * (thread wake-ups, futexes) against ~0.5 µs for the same `write(2)` made synchronously — and
 * in its `'utf8'` mode each line re-measured everything pending (`Buffer.byteLength` on a
 * growing cons string, the largest allocator in Gatehouse under load; docs/benchmarks.md,
 * issue 12). A synchronous write here never stalls the loop on a slow reader: Node puts a pipe
 * on stdout in non-blocking mode, so a full pipe answers EAGAIN (or takes part of the chunk), and
 * then what is left goes to an asynchronous write, retried every 100 ms while the pipe stays
 * full, with new lines queued behind it (as sonic-boom does). Nothing waits longer than with the
 * default: a line reaches the kernel when the turn that logged it ends.
 *
 * On `process.exit` (or an uncaught exception) what is queued is written synchronously
 * ({@link flushSync}). EPIPE (the reader is gone) silently stops the logging, as pino's default
 * does; any other write error is emitted as `'error'` (unhandled, it is thrown, as with pino's
 * default). The descriptor is never closed here.
 */
export class LineDestination extends EventEmitter {
  /** Lines logged and not yet handed to the kernel. */
  private queued: string[] = [];
  /** Whether a flush is scheduled for the end of this turn. */
  private scheduled = false;
  /** The unwritten tail of a chunk the descriptor did not take at once (pipe full), written asynchronously. */
  private rest: Buffer | undefined;
  /** Whether `rest` is in an `fs.write` right now (rather than waiting for a retry). */
  private restInFlight = false;
  /** Stopped for good (EPIPE, or {@link end}). */
  private stopped = false;
  private readonly self = new WeakRef(this);

  /** @param fd an open descriptor, e.g. 1 for stdout; it stays open (the caller owns it). */
  constructor(readonly fd: number) {
    super();
    live.add(this.self);
    if (!exitHooked) {
      exitHooked = true;
      process.on('exit', flushAllSync);
    }
  }

  /** Queues one line (pino hands each record as a string ending in a newline). Returns true (pino ignores backpressure). */
  write(line: string): boolean {
    if (this.stopped) return true;
    this.queued.push(line);
    // Logged by a later 'exit' listener: no turn will end to write it.
    if (exiting) {
      this.flushSync();
      return true;
    }
    if (!this.scheduled && this.rest === undefined) {
      this.scheduled = true;
      setImmediate(flushQueued, this);
    }
    return true;
  }

  /** Writes what is queued now; `callback` once it has all reached the kernel (or at once when nothing waits). */
  flush(callback?: (error?: Error) => void): void {
    this.writeQueued();
    if (!callback) return;
    if (this.rest === undefined) process.nextTick(callback);
    else this.once('drain', () => callback());
  }

  /**
   * Writes everything queued synchronously, retrying every 100 ms while the descriptor answers
   * EAGAIN (as sonic-boom's `flushSync`); a tail already in an asynchronous write is left to it.
   * Throws the write's error, except EPIPE, which stops the logging.
   */
  flushSync(): void {
    if (this.stopped) return;
    let pending: Buffer | undefined;
    if (this.rest !== undefined && !this.restInFlight) {
      pending = this.rest;
      this.rest = undefined;
    }
    const text = this.queued.join('');
    this.queued = [];
    for (const chunk of pending ? [pending, Buffer.from(text, 'utf8')] : [Buffer.from(text, 'utf8')]) {
      let left = chunk;
      while (left.length > 0) {
        try {
          left = left.subarray(writeSync(this.fd, left));
        } catch (error) {
          if (!isBusy(error)) return void this.failed(error as NodeJS.ErrnoException, true);
          sleep(BUSY_RETRY_MS);
        }
      }
    }
  }

  /** Writes what is queued and stops: later lines are dropped. The descriptor stays open. */
  end(): void {
    this.writeQueued();
    if (this.rest === undefined) this.close();
    else this.once('drain', () => this.close());
  }

  private close(): void {
    // Once: an EPIPE while end() waits for the tail closes first.
    if (this.stopped) return;
    this.stopped = true;
    live.delete(this.self);
    this.emit('close');
  }

  /** Hands the queued lines to the kernel, ~16 KiB per write, unless a tail is still being written. */
  private writeQueued(): void {
    this.scheduled = false;
    const lines = this.queued;
    if (lines.length === 0 || this.rest !== undefined || this.stopped) return;
    this.queued = [];
    let start = 0;
    while (start < lines.length) {
      let end = start + 1;
      let size = lines[start].length;
      while (end < lines.length && size + lines[end].length <= MAX_WRITE) size += lines[end++].length;
      const chunk = start === 0 && end === lines.length ? lines.join('') : lines.slice(start, end).join('');
      if (!this.writeNow(chunk)) {
        // The descriptor is full or failed: the lines after this chunk wait behind its tail.
        if (!this.stopped) this.queued = end < lines.length ? lines.slice(end).concat(this.queued) : this.queued;
        return;
      }
      start = end;
    }
  }

  /** Writes `chunk` synchronously; false when part of it was left for later ({@link rest}) or writing stopped. */
  private writeNow(chunk: string): boolean {
    let written: number;
    try {
      written = writeSync(this.fd, chunk);
    } catch (error) {
      if (!isBusy(error)) {
        this.failed(error as NodeJS.ErrnoException, false);
        return !this.stopped;
      }
      written = 0;
    }
    // The common case: the descriptor took it all.
    if (written === Buffer.byteLength(chunk, 'utf8')) return true;
    this.rest = Buffer.from(chunk, 'utf8').subarray(written);
    this.writeRest();
    return false;
  }

  private writeRest(): void {
    if (this.rest === undefined || this.stopped) return;
    this.restInFlight = true;
    writeLater(this.fd, this.rest, 0, this.rest.length, null, (error, written) => {
      this.restInFlight = false;
      if (this.rest === undefined) return; // flushSync wrote it meanwhile
      if (error) {
        if (isBusy(error)) setTimeout(() => this.writeRest(), BUSY_RETRY_MS);
        else {
          this.rest = undefined;
          this.failed(error, false);
          this.afterRest();
        }
        return;
      }
      this.rest = this.rest.subarray(written);
      if (this.rest.length > 0) return this.writeRest();
      this.rest = undefined;
      this.afterRest();
    });
  }

  /** The tail is out: the lines queued meanwhile go next, then `'drain'`. */
  private afterRest(): void {
    this.writeQueued();
    if (this.rest === undefined) this.emit('drain');
  }

  /** EPIPE stops the logging silently; other errors are emitted (or thrown from {@link flushSync} when `thrown`). */
  private failed(error: NodeJS.ErrnoException, thrown: boolean): void {
    if (error.code === 'EPIPE') {
      this.queued = [];
      this.rest = undefined;
      this.close();
      return;
    }
    if (thrown) throw error;
    this.emit('error', error);
  }
}

function flushQueued(destination: LineDestination): void {
  (destination as unknown as { writeQueued(): void }).writeQueued();
}

function flushAllSync(): void {
  exiting = true;
  for (const ref of live) ref.deref()?.flushSync();
}

/**
 * The root logger's destination when none is given: stdout (fd 1 as pino's default uses it: a
 * pipe, a file or a terminal) as a {@link LineDestination}, one per process; or undefined — pino's
 * own choice, `process.stdout` itself — when `process.stdout.write` has been replaced (a test
 * capturing output), exactly where pino would not use its sonic-boom either.
 */
export function stdoutDestination(): LineDestination | undefined {
  const stdout = process.stdout as unknown as { write: unknown; fd?: number; constructor: { prototype: { write: unknown } } };
  if (stdout.write !== stdout.constructor.prototype.write) return undefined;
  // `fd` is undefined in a worker thread, where pino's default also writes to fd 1. Reading
  // `process.stdout` also puts a pipe on fd 1 in non-blocking mode (see LineDestination).
  return (stdoutLines ??= new LineDestination(stdout.fd || 1));
}

let stdoutLines: LineDestination | undefined;
