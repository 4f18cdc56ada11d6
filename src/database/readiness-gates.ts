import { Injectable } from '@nestjs/common';

/** `pending`: not done yet (first load, connecting); `error`: tried and failing now. */
export type GateState = 'ok' | 'pending' | 'error';

/** One named condition a replica must meet before it serves (see {@link ReadinessGates}). */
export interface ReadinessGate {
  readonly name: string;
  readonly state: GateState;
  /** Why it is not ok (shown in `/readyz`); no secrets. */
  readonly reason: string | null;
  set(state: GateState, reason?: string | null): void;
  /** Resolves the first time the gate is ok. */
  whenOk(): Promise<void>;
}

/**
 * Conditions, registered by the modules that own them, that `/readyz` requires besides the
 * database and migrations: the change bus is listening, policies and the server registry have
 * loaded at least once, … A module registers its gate in its constructor (state `pending`) and
 * moves it as it goes; `/readyz` answers 503 naming every gate that is not `ok`. Lives in the
 * global database module so any module can register one without importing `health/`.
 */
@Injectable()
export class ReadinessGates {
  private readonly gates = new Map<string, ReadinessGate>();

  /** Registers (or returns the existing) gate `name`, initially `pending`. */
  register(name: string): ReadinessGate {
    const existing = this.gates.get(name);
    if (existing) return existing;
    let resolveOk: () => void = () => undefined;
    const ok = new Promise<void>((resolve) => (resolveOk = resolve));
    const gate = {
      name,
      state: 'pending' as GateState,
      reason: null as string | null,
      set(state: GateState, reason: string | null = null) {
        gate.state = state;
        gate.reason = state === 'ok' ? null : reason;
        if (state === 'ok') resolveOk();
      },
      whenOk: () => ok,
    };
    this.gates.set(name, gate);
    return gate;
  }

  /** Every gate's state, by name. */
  states(): Record<string, GateState> {
    return Object.fromEntries([...this.gates].map(([name, g]) => [name, g.state]));
  }

  /** Whether every gate is ok (what {@link failing} would answer empty), without allocating. */
  allOk(): boolean {
    for (const gate of this.gates.values()) if (gate.state !== 'ok') return false;
    return true;
  }

  /** The gates that are not ok, with their reasons. */
  failing(): { name: string; state: GateState; reason: string | null }[] {
    return [...this.gates.values()].filter((g) => g.state !== 'ok').map((g) => ({ name: g.name, state: g.state, reason: g.reason }));
  }
}
