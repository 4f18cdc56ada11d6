/** Something in flight a {@link Cancellation} can stop: a request being sent or read, a wait before a retry, a nested cancellation. */
export interface Abortable {
  abort(reason: unknown): void;
}

/**
 * The one cancellation of an upstream call, instead of an `AbortController` per layer and the
 * listeners between them: aborted once — by the caller's signal, Gatehouse's timeout, or the
 * connection closing — it stops what the call has in flight at that moment ({@link hold}: the
 * request being sent or read, the wait before a retry, or the cancellation of one attempt)
 * and everything put under it later. `reason` is what the call then fails with: the abort's
 * reason as given (an `AbortError` `DOMException` if none, as `AbortController.abort()` makes).
 * An `AbortSignal` (for the SDK client, for requests the upstream sends) is made only when asked for.
 */
export class Cancellation implements Abortable {
  aborted = false;
  reason: unknown;
  private current: Abortable | undefined;
  private controller: AbortController | undefined;

  /** An `AbortSignal` aborted with this, with the same reason (made on first use). */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason;
    const current = this.current;
    this.current = undefined;
    current?.abort(this.reason);
    this.controller?.abort(this.reason);
  }

  /** Puts `what` under this cancellation: aborted now if this already is, else when this is (until {@link release}). One at a time. */
  hold(what: Abortable): void {
    if (this.aborted) what.abort(this.reason);
    else this.current = what;
  }

  /** `what` ended: aborting no longer concerns it. */
  release(what: Abortable): void {
    if (this.current === what) this.current = undefined;
  }
}
