/** A cancellable timer from a {@link Clock}. */
export interface Timer {
  /** Stops the timer; calling it after the timer fired (or twice) does nothing. */
  cancel(): void;
}

/**
 * Time for the upstream services (backoff, idle parking, pool reaping): wall time in ms and
 * timers. Production uses {@link systemClock}; race tests pass a fake they advance by hand.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` once after `ms` milliseconds. Timers never keep the process alive. */
  setTimer(fn: () => void, ms: number): Timer;
}

/** The real clock: `Date.now()` and unref'd `setTimeout`. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const handle = setTimeout(fn, ms);
    handle.unref();
    return { cancel: () => clearTimeout(handle) };
  },
};

/** Nest injection token of the upstreams' {@link Clock}. */
export const UPSTREAM_CLOCK = Symbol('UPSTREAM_CLOCK');
