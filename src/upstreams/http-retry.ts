import { DescribedError } from './error-description.js';

/**
 * The upstream refused a request before running it: HTTP 429 (Too Many Requests) or 503
 * (Service Unavailable), RFC 9110 §15.6.4 / RFC 6585 §4. Safe to send again, even a
 * `tools/call`; `retryAfterMs` is its `Retry-After`, if it sent one.
 */
export class UpstreamRefusedError extends DescribedError {
  constructor(
    readonly status: 429 | 503,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`HTTP ${status} ${status === 429 ? 'Too Many Requests' : 'Service Unavailable'} from the upstream`);
  }
}

/** Longest `Retry-After` honoured (10 minutes); a longer one is treated as "not within this call". */
const MAX_RETRY_AFTER_MS = 600_000;

/**
 * A `Retry-After` header value (RFC 9110 §10.2.3: delay-seconds or an HTTP-date) in ms from
 * `now`; undefined when absent or unparsable. A date in the past is 0.
 */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const text = (Array.isArray(value) ? value[0] : value)?.trim();
  if (!text) return undefined;
  if (/^\d{1,10}$/.test(text)) return Math.min(MAX_RETRY_AFTER_MS + 1, Number(text) * 1000);
  const date = Date.parse(text);
  if (Number.isNaN(date)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS + 1, Math.max(0, date - now));
}

/** How {@link RetryPolicy} waits between attempts. */
export interface RetryOptions {
  /** First backoff step in ms (doubles per attempt). */
  baseMs: number;
  /** Largest backoff step in ms. */
  maxMs: number;
  /** Most attempts in all, the first included. */
  maxAttempts: number;
  /** Uniform random in [0, 1): the jitter source (injectable for tests). */
  random?: () => number;
}

export const DEFAULT_RETRY: RetryOptions = { baseMs: 250, maxMs: 5_000, maxAttempts: 4 };

/**
 * When to send a refused request again: exponential backoff with full jitter
 * (`random × min(maxMs, baseMs × 2^n)`), but never sooner than the upstream's `Retry-After`,
 * and only while the wait still ends before the call's deadline. Returns the wait in ms, or
 * undefined when the request must not be retried (attempts used up, or past the deadline).
 */
export function retryDelay(options: RetryOptions, attempt: number, retryAfterMs: number | undefined, remainingMs: number): number | undefined {
  if (attempt + 1 >= options.maxAttempts) return undefined;
  if (retryAfterMs !== undefined && retryAfterMs > MAX_RETRY_AFTER_MS) return undefined;
  const step = Math.min(options.maxMs, options.baseMs * 2 ** attempt);
  const jittered = Math.floor((options.random ?? Math.random)() * step);
  const wait = Math.max(jittered, retryAfterMs ?? 0);
  // The retried request needs time of its own after the wait.
  return wait < remainingMs ? wait : undefined;
}

/**
 * Network errors that happen before a request reaches the upstream (the connection was never
 * made): the upstream cannot have run it, so even a `tools/call` may be sent again. Anything
 * else after the request was written (reset, closed, body timeout) may have run it.
 */
const NEVER_SENT = new Set(['ECONNREFUSED', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'EHOSTUNREACH', 'ENETUNREACH']);

/** Whether `error` (or its cause) is a failure to connect at all (see {@link NEVER_SENT}). */
export function neverSent(error: unknown): boolean {
  for (let current = error, depth = 0; current && typeof current === 'object' && depth < 5; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string' && NEVER_SENT.has(code)) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}

/**
 * A `fetch` for the SDK client transports that sends a request the upstream refused (429/503,
 * see {@link UpstreamRefusedError}) again as {@link retryDelay} says, honouring `Retry-After`,
 * within `budgetMs` from the first attempt (the server's timeout: the SDK's own deadline for
 * the request). Covers what the forwarder does not: the handshake, lists, and every request
 * to 2026-07-28 and SSE upstreams. Bodies are JSON strings, so sending again is exact; the
 * request's signal aborts a wait.
 */
export function fetchRetryingRefusals(base: typeof fetch, options: RetryOptions, budgetMs: number, now: () => number = Date.now): typeof fetch {
  return async (input, init) => {
    const started = now();
    for (let attempt = 0; ; attempt++) {
      const response = await base(input, init);
      if (response.status !== 429 && response.status !== 503) return response;
      const wait = retryDelay(options, attempt, parseRetryAfter(response.headers.get('retry-after') ?? undefined, now()), started + budgetMs - now());
      if (wait === undefined) return response;
      await response.body?.cancel().catch(() => undefined);
      await new Promise<void>((resolve, reject) => {
        const signal = init?.signal;
        const timer = setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, wait);
        const onAbort = () => {
          clearTimeout(timer);
          reject(signal?.reason instanceof Error ? signal.reason : new DescribedError('aborted'));
        };
        if (signal?.aborted) onAbort();
        else signal?.addEventListener('abort', onAbort, { once: true });
      });
    }
  };
}
