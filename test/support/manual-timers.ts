import type { Timers } from '../../src/database/backoff.js';

interface Pending {
  id: number;
  at: number;
  fn: () => void;
}

/**
 * {@link Timers} driven by the test: nothing fires until {@link advance} moves the clock past
 * it. Due timers fire in order of their due time (then of creation), including timers that
 * firing ones schedule within the advanced span.
 */
export class ManualTimers implements Timers {
  now = 0;
  private nextId = 1;
  private readonly queue: Pending[] = [];

  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++;
    this.queue.push({ id, at: this.now + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    const i = this.queue.findIndex((p) => p.id === handle);
    if (i >= 0) this.queue.splice(i, 1);
  }

  /** Delays (ms from now) of the timers still pending, soonest first. */
  pending(): number[] {
    return this.queue.map((p) => p.at - this.now).sort((a, b) => a - b);
  }

  /** Moves the clock forward by `ms`, firing every timer that falls due. */
  advance(ms: number): void {
    const target = this.now + ms;
    for (;;) {
      const due = this.queue.filter((p) => p.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.queue.splice(this.queue.indexOf(due), 1);
      this.now = due.at;
      due.fn();
    }
    this.now = target;
  }
}
