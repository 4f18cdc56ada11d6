/** Default bound on one message an stdio upstream writes (bytes): GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE. */
export const DEFAULT_MAX_MESSAGE_BYTES = 32 * 1024 * 1024;

/** Bytes kept from the start and the end of an oversized line, to tell which request it answered. */
const EDGE_BYTES = 512;

/** What {@link LineFramer.push} found: a whole line, or a line over the bound (dropped). */
export type Frame = { kind: 'line'; line: Buffer } | { kind: 'oversized'; bytes: number; head: Buffer; tail: Buffer };

/**
 * Splits an stdio upstream's stdout into newline-delimited messages (MCP stdio transport:
 * "Messages are delimited by newlines, and MUST NOT contain embedded newlines"), each bounded by
 * `maxBytes`. Own code rather than the SDK's `ReadBuffer`, which throws out of the `data`
 * handler past its bound (an uncaught exception that exited Gatehouse) and concatenates the
 * whole buffer on every chunk (quadratic in the message size). Here a line over the bound is
 * dropped as it streams in — only its first and last {@link EDGE_BYTES} bytes are kept — and
 * reported once its newline arrives, so memory stays below `maxBytes` plus one chunk whatever
 * the upstream writes; each byte is scanned once.
 */
export class LineFramer {
  private chunks: Buffer[] = [];
  private size = 0;
  private overflow: { bytes: number; head: Buffer; tail: Buffer } | undefined;

  /** @param maxBytes the longest line accepted, in bytes (without its newline). */
  constructor(readonly maxBytes: number) {}

  /** Takes the next chunk of stdout; returns the lines it completed, in order. */
  push(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    for (let start = 0; start < chunk.length; ) {
      const newline = chunk.indexOf(0x0a, start);
      const piece = chunk.subarray(start, newline < 0 ? chunk.length : newline);
      this.take(piece);
      if (newline < 0) break;
      frames.push(this.finish());
      start = newline + 1;
    }
    return frames;
  }

  /** Forgets a partial line (the stream ended or is being closed). */
  clear(): void {
    this.chunks = [];
    this.size = 0;
    this.overflow = undefined;
  }

  private take(piece: Buffer): void {
    if (piece.length === 0) return;
    if (this.overflow) {
      this.overflow.bytes += piece.length;
      this.overflow.tail = lastBytes(Buffer.concat([this.overflow.tail, piece.subarray(-EDGE_BYTES)]));
      return;
    }
    if (this.size + piece.length <= this.maxBytes) {
      this.chunks.push(piece);
      this.size += piece.length;
      return;
    }
    const sofar = Buffer.concat([...this.chunks, piece.subarray(0, EDGE_BYTES)]);
    this.overflow = { bytes: this.size + piece.length, head: Buffer.from(sofar.subarray(0, EDGE_BYTES)), tail: lastBytes(Buffer.concat([...lastChunks(this.chunks), piece.subarray(-EDGE_BYTES)])) };
    this.chunks = [];
    this.size = 0;
  }

  private finish(): Frame {
    const overflow = this.overflow;
    if (overflow) {
      this.clear();
      return { kind: 'oversized', ...overflow };
    }
    const line = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.size);
    this.clear();
    return { kind: 'line', line };
  }
}

/** The fewest trailing chunks holding at least {@link EDGE_BYTES} bytes. */
function lastChunks(chunks: Buffer[]): Buffer[] {
  let from = chunks.length;
  for (let bytes = 0; from > 0 && bytes < EDGE_BYTES; ) bytes += chunks[--from].length;
  return chunks.slice(from);
}

/** A copy of the last {@link EDGE_BYTES} bytes (a copy: the source chunk may be large). */
function lastBytes(buffer: Buffer): Buffer {
  return Buffer.from(buffer.subarray(Math.max(0, buffer.length - EDGE_BYTES)));
}

const ID = String.raw`(-?\d{1,20}|"(?:[^"\\]|\\.){0,200}")`;
/** `{"jsonrpc":"2.0","id":7,"result"…` — how most servers (Python, Go, hand-written) order a response. */
const HEAD_ID = new RegExp(String.raw`^\s*\{\s*"jsonrpc"\s*:\s*"2\.0"\s*,\s*"id"\s*:\s*${ID}\s*,\s*"(?:result|error)"\s*:`);
/** `{"result":…,"jsonrpc":"2.0","id":7}` — how the TypeScript SDK orders one: the top-level id closes the object. */
const HEAD_RESULT = /^\s*\{\s*"(?:result|error)"\s*:/;
const TAIL_ID = new RegExp(String.raw`[,{]\s*"id"\s*:\s*${ID}\s*\}\s*\r?$`);

/**
 * The id of the response an oversized line was, when its first or last bytes say so
 * unambiguously (see {@link HEAD_ID}, {@link HEAD_RESULT}); undefined for a request, a
 * notification or an order it cannot tell. The caller can then fail that one request at once
 * instead of letting it wait out its timeout.
 */
export function oversizedResponseId(head: Buffer, tail: Buffer): string | number | undefined {
  const start = head.toString('utf8');
  const fromHead = HEAD_ID.exec(start)?.[1];
  const raw = fromHead ?? (HEAD_RESULT.test(start) ? TAIL_ID.exec(tail.toString('utf8'))?.[1] : undefined);
  if (raw === undefined) return undefined;
  try {
    const id = JSON.parse(raw) as unknown;
    return typeof id === 'string' || (typeof id === 'number' && Number.isSafeInteger(id)) ? id : undefined;
  } catch {
    return undefined;
  }
}
