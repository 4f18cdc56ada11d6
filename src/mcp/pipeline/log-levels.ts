import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { ChangeBusService } from '../../database/change-bus.service.js';
import { SessionsService } from '../../sessions/sessions.service.js';

/** RFC 5424 severities as MCP names them, least severe first (MCP spec, server/utilities/logging). */
export const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const rank = (level: unknown): number => LOG_LEVELS.indexOf(level as LogLevel);

/** Bus topic: session `{ id }` set its level to `{ level }` on some replica. */
const LEVEL_SET = 'mcp.log-level';

/**
 * Per-session logging levels (`logging/setLevel`, 2025 era). One upstream connection serves
 * every session, so the level a session sets must not decide for the others: each session's
 * level filters the `notifications/message` Gatehouse delivers to it, and the upstreams are set
 * to the most verbose level any session wants. Levels are this replica's memory, shared with
 * the others over the change bus (a session's requests may reach any replica); a closed
 * session's level is forgotten. A session that set none gets everything the upstream sends.
 */
@Injectable()
export class LogLevels implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly levels = new Map<string, LogLevel>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
  ) {}

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.bus.subscribe<{ id?: string; level?: string }>(LEVEL_SET, (event) => {
        if (!event.local && event.data?.id && rank(event.data.level) >= 0) this.levels.set(event.data.id, event.data.level as LogLevel);
      }),
      this.sessions.onClosed((id) => this.levels.delete(id)),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Records `level` for session `id` (here and on every replica). */
  set(id: string, level: LogLevel): void {
    this.levels.set(id, level);
    void this.bus.publish(LEVEL_SET, { id, level }).catch(() => undefined);
  }

  /** Whether a message of `level` goes to session `id` (no level set: yes). */
  allows(id: string | undefined, level: unknown): boolean {
    const wanted = id === undefined ? undefined : this.levels.get(id);
    return wanted === undefined || rank(level) >= rank(wanted);
  }

  /** The level to set on upstreams: the most verbose any session (and `also`) wants. */
  mostVerbose(also?: LogLevel): LogLevel {
    let min = also === undefined ? LOG_LEVELS.length - 1 : rank(also);
    for (const level of this.levels.values()) min = Math.min(min, rank(level));
    return LOG_LEVELS[min];
  }
}
