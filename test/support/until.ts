/**
 * Resolves once `cond` holds, or rejects after `ms`. For waiting on real I/O (a query, a
 * reconnect) that the test cannot observe otherwise; checked every 5 ms. Not a sleep: the
 * outcome never depends on the machine's speed, only how long a failing test takes to fail.
 */
export async function until(cond: () => boolean, ms = 5_000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Lets pending I/O callbacks and microtasks run once. */
export const tick = () => new Promise<void>((r) => setImmediate(r));
