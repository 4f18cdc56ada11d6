import { RESYNC_TOPIC, type ChangeEvent, type Queryable, type Topic } from '../../src/database/change-bus.js';
import type { ChangeBusService } from '../../src/database/change-bus.service.js';

/** One `publish` a {@link FakeBus} saw, with the transaction it ran in (if any). */
export interface Published {
  topic: string;
  data: unknown;
  tx: Queryable | undefined;
}

/**
 * A change bus whose deliveries the test controls: `publish` records (and runs `onPublish`, e.g.
 * to look at the writing transaction), nothing is delivered until the test calls {@link emit}.
 * Handlers run synchronously, in subscription order, with typed topics' payloads parsed.
 */
export class FakeBus {
  readonly published: Published[] = [];
  onPublish: ((p: Published) => Promise<void> | void) | undefined;
  private readonly handlers = new Map<string, Set<(e: ChangeEvent) => void>>();

  subscribe<T>(t: Topic<T> | string, handler: (event: ChangeEvent<T>) => void): () => void {
    const name = typeof t === 'string' ? t : t.name;
    const set = this.handlers.get(name) ?? new Set();
    this.handlers.set(name, set);
    const h = (e: ChangeEvent) => {
      if (typeof t !== 'string' && e.topic !== RESYNC_TOPIC) {
        const data = t.parse(e.data);
        if (data === undefined) return;
        return handler({ ...e, data });
      }
      handler(e as ChangeEvent<T>);
    };
    set.add(h);
    return () => set.delete(h);
  }

  async publish<T>(t: Topic<T> | string, data: T | null = null, tx?: Queryable): Promise<void> {
    const p = { topic: typeof t === 'string' ? t : t.name, data, tx };
    this.published.push(p);
    await this.onPublish?.(p);
  }

  /** Delivers an event (as if from another replica) to this topic's handlers, or to all for `$resync`. */
  emit(topic: Topic<unknown> | string, data: unknown = null): void {
    const name = typeof topic === 'string' ? topic : topic.name;
    const event: ChangeEvent = { topic: name, data, origin: 'other-replica', local: false };
    const sets = name === RESYNC_TOPIC ? [...this.handlers.values()] : [this.handlers.get(name) ?? new Set()];
    for (const set of sets) for (const h of [...set]) h(event);
  }

  /** This fake where the app's bus service is expected. */
  asService(): ChangeBusService {
    return this as unknown as ChangeBusService;
  }
}
