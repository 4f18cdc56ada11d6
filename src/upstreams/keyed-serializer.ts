/**
 * Runs tasks one at a time per key, coalescing: while a task for a key runs, further calls for
 * that key schedule exactly one more run after it (with the latest task given), and all of them
 * resolve when that run is over. So every caller is answered by a run that *started after* its
 * call — it sees the state it asked about — and no two runs for one key ever overlap (two
 * concurrent reconciles of one server used to start two processes and leak one).
 */
export class KeyedSerializer<K> {
  private readonly slots = new Map<K, { task: () => Promise<void>; again: boolean; done: Promise<void> }>();

  /** Runs `task` for `key` now, or once after the run in progress. Rejects with the last run's error. */
  run(key: K, task: () => Promise<void>): Promise<void> {
    const slot = this.slots.get(key);
    if (slot) {
      slot.again = true;
      slot.task = task;
      return slot.done;
    }
    let settle: (error?: Error) => void = () => undefined;
    const done = new Promise<void>((resolve, reject) => (settle = (error) => (error === undefined ? resolve() : reject(error))));
    const fresh = { task, again: false, done };
    this.slots.set(key, fresh);
    void (async () => {
      let failure: Error | undefined;
      do {
        fresh.again = false;
        failure = undefined;
        try {
          await fresh.task();
        } catch (error) {
          failure = error instanceof Error ? error : new Error(String(error));
        }
      } while (fresh.again);
      this.slots.delete(key);
      settle(failure);
    })();
    return done;
  }

  /** Whether a run for `key` is in progress. */
  busy(key: K): boolean {
    return this.slots.has(key);
  }
}
