import { pino } from 'pino';

/** What pino's `destination()` returns (sonic-boom's `SonicBoom`; sonic-boom is pino's dependency, not ours). */
export type LogDestination = ReturnType<typeof pino.destination>;

/** The options of {@link bufferedDestination}: sonic-boom's, without `contentMode` (always `'buffer'`). */
export type BufferedDestinationOptions = Omit<NonNullable<Extract<Parameters<typeof pino.destination>[0], { fd?: unknown }>>, 'contentMode'>;

/**
 * pino's default destination — `pino.destination()`: sonic-boom, asynchronous, written in
 * chunks of at most 16 KiB, flushed synchronously when the process exits, quiet on EPIPE — in
 * sonic-boom's `contentMode: 'buffer'`, each line (a string from pino) handed to it as a UTF-8
 * `Buffer`. Lines come out byte for byte as with the default, in order.
 *
 * Why not the default (sonic-boom 4.2.1's `'utf8'` mode, 5.0.2 is the same): while one write
 * is in flight, each new line is appended to the pending chunk with `+=` and then the whole
 * chunk is measured with `Buffer.byteLength`, which makes V8 flatten the growing cons string:
 * every line copies everything pending (up to 16 KiB), and the finished chunk is encoded twice
 * more (by `fs.write` and again by `releaseWritingBuf`). Under load that was the largest single
 * allocator in Gatehouse (5.5 KB per `tools/call`, issue 12, docs/benchmarks.md). In buffer
 * mode sonic-boom keeps the byte count of each pending chunk, so a line costs its own encoding
 * and one copy into the chunk (`Buffer.concat`) when the chunk is written.
 *
 * `options`: sonic-boom's (`fd` or `dest`, `sync`, `minLength`, …). Errors other than EPIPE are
 * emitted as `'error'` by the stream, as with pino's default destination.
 */
export function bufferedDestination(options: BufferedDestinationOptions): LogDestination {
  const stream = pino.destination({ ...options, contentMode: 'buffer' });
  // sonic-boom sets `write` per instance according to the mode (here its `writeBuffer`, which
  // takes a Buffer and counts `data.length` bytes); pino's EPIPE handler may later replace it with a no-op.
  // eslint-disable-next-line @typescript-eslint/unbound-method -- called with the stream as `this` below
  const writeBuffer = stream.write as unknown as (this: LogDestination, data: Buffer) => boolean;
  stream.write = function write(this: LogDestination, line: string | Buffer): boolean {
    return writeBuffer.call(this, typeof line === 'string' ? Buffer.from(line, 'utf8') : line);
  };
  return stream;
}

/**
 * The root logger's destination when none is given: stdout as a {@link bufferedDestination}
 * (fd 1 as pino's default uses it, a pipe, a file or a terminal), or undefined — pino's own
 * choice, `process.stdout` itself — when `process.stdout.write` has been replaced (a test
 * capturing output), exactly where pino would not use a sonic-boom either.
 */
export function stdoutDestination(): LogDestination | undefined {
  const stdout = process.stdout as unknown as { write: unknown; fd?: number; constructor: { prototype: { write: unknown } } };
  if (stdout.write !== stdout.constructor.prototype.write) return undefined;
  // `fd` is undefined in a worker thread, where pino's default also writes to fd 1.
  return bufferedDestination({ fd: stdout.fd || 1 });
}
