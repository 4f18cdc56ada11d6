/**
 * Lifecycle of one {@link UpstreamConnection}:
 *
 * ```
 *   connecting ──► connected ──► idle        (stdio parked after GATEHOUSE_STDIO_IDLE_TTL)
 *     ▲   │            │          │
 *     │   ▼            ▼          │
 *     └─ error ◄───────┘          │          (crash, lost session: retried with backoff)
 *     ▲                           │
 *     └───────────────────────────┘          (the next call wakes it)
 *   disabled                                 (server disabled: never connects)
 *   every state but closed ──close(reason)──► closed   (final; calls in flight fail at once)
 * ```
 */
export type ConnectionState = 'connecting' | 'connected' | 'error' | 'idle' | 'disabled' | 'closed';

/** Allowed transitions; anything else is a bug and throws {@link IllegalTransitionError}. */
export const TRANSITIONS: Readonly<Record<ConnectionState, readonly ConnectionState[]>> = {
  disabled: ['closed'],
  connecting: ['connecting', 'connected', 'error', 'closed'],
  connected: ['connecting', 'error', 'idle', 'closed'],
  error: ['connecting', 'closed'],
  idle: ['connecting', 'closed'],
  closed: [],
};

/** A transition {@link TRANSITIONS} does not allow was attempted. */
export class IllegalTransitionError extends Error {
  constructor(
    readonly from: ConnectionState,
    readonly to: ConnectionState,
  ) {
    super(`illegal upstream connection transition ${from} → ${to}`);
  }
}

/** Holds a connection's state; {@link to} is the one place it changes. */
export class ConnectionStateMachine {
  private current: ConnectionState;

  constructor(
    initial: ConnectionState,
    private readonly onChange: (from: ConnectionState, to: ConnectionState) => void = () => undefined,
  ) {
    this.current = initial;
  }

  get state(): ConnectionState {
    return this.current;
  }

  /** Whether `next` is allowed from the current state. */
  can(next: ConnectionState): boolean {
    return TRANSITIONS[this.current].includes(next);
  }

  /** Moves to `next`. Throws {@link IllegalTransitionError} if {@link TRANSITIONS} does not allow it. */
  to(next: ConnectionState): void {
    if (!this.can(next)) throw new IllegalTransitionError(this.current, next);
    const from = this.current;
    this.current = next;
    this.onChange(from, next);
  }
}
