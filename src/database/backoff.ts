/**
 * Timers as an injectable dependency: the retry and liveness loops of the change bus and the
 * policy loader take one, so tests drive time by hand (`test/support/manual-timers.ts`) instead of sleeping.
 */
export interface Timers {
  /** Calls `fn` once after `ms` milliseconds; the handle cancels it. Must not keep the process alive. */
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real timers, unref'd (a pending retry never keeps the process alive). */
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout | undefined),
};

/** Bounds of an exponential backoff, in ms. */
export interface BackoffBounds {
  min: number;
  max: number;
}

/**
 * The delay (ms) before retry number `attempt` (0 for the first retry): exponential,
 * `min · 2^attempt` capped at `max`, with "equal jitter" — a uniformly random point in the upper
 * half of that — so replicas that lost the same database at the same moment do not reconnect in
 * lockstep, and no delay is ever below half the nominal one. `random` returns [0, 1)
 * (`Math.random`; tests inject a fixed source).
 */
export function backoffDelay(attempt: number, bounds: BackoffBounds, random: () => number = Math.random): number {
  const nominal = Math.min(bounds.max, bounds.min * 2 ** Math.min(attempt, 30));
  return Math.round(nominal / 2 + (nominal / 2) * random());
}
