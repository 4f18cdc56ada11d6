/** Where a {@link ServerLogEntry} came from. */
export type ServerLogSource = 'stderr' | 'notification' | 'event';

/** One line of a server's recent log, as `GET /api/v1/servers/:name/logs` returns it. */
export interface ServerLogEntry {
  /** ISO 8601 time the line was recorded on this replica. */
  at: string;
  /** `stderr`: a line the stdio process wrote; `notification`: its `notifications/message`; `event`: Gatehouse's own (connected, failed, restarted…). */
  source: ServerLogSource;
  /** `info`, `warning`, `error`, …: the MCP logging level for notifications, Gatehouse's for events; stderr lines are `info`. */
  level: string;
  /** The line, masked (the connection's values), at most {@link MAX_LOG_LINE} characters. */
  text: string;
}

/** Lines a server's ring keeps (the oldest are dropped). */
export const SERVER_LOG_CAPACITY = 500;
/** Longest line kept, in characters; the rest is cut with "…". */
export const MAX_LOG_LINE = 2_000;

/**
 * A bounded ring of one upstream server's recent log lines on this replica: its stdio stderr,
 * the `notifications/message` it sends on the shared connection, and connection events. Lines
 * arrive already masked (the writer — `UpstreamConnection` — masks with its ValueMasker);
 * memory is bounded by {@link SERVER_LOG_CAPACITY} × {@link MAX_LOG_LINE}. Per replica: each
 * replica keeps what its own connection saw.
 */
export class ServerLog {
  private readonly entries: ServerLogEntry[] = [];
  private next = 0;

  constructor(
    private readonly now: () => number = Date.now,
    readonly capacity = SERVER_LOG_CAPACITY,
  ) {}

  /** Records one line (cut to {@link MAX_LOG_LINE}; blank lines are skipped). */
  add(source: ServerLogSource, level: string, text: string): void {
    if (!text.trim()) return;
    const entry = { at: new Date(this.now()).toISOString(), source, level, text: text.length > MAX_LOG_LINE ? `${text.slice(0, MAX_LOG_LINE)}…` : text };
    if (this.entries.length < this.capacity) this.entries.push(entry);
    else this.entries[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
  }

  /** The newest `limit` lines, oldest first (newest last). */
  recent(limit = this.capacity): ServerLogEntry[] {
    const ordered = this.entries.length < this.capacity ? this.entries : [...this.entries.slice(this.next), ...this.entries.slice(0, this.next)];
    return ordered.slice(Math.max(0, ordered.length - limit));
  }
}
