import { pino, type DestinationStream, type Logger } from 'pino';
import type { AppConfig } from '../../config/config.schema.js';
import { stdoutDestination } from './destination.js';
import { redactDeep } from './redact.js';
import { AccessLine } from './request-logging.js';

/**
 * The root pino logger. JSON in production (one object a line, for the cluster's log
 * collector); human-readable only when `LOG_FORMAT=pretty` or in development, and only if
 * the dev dependency `pino-pretty` is installed. Every record passes through
 * {@link redactDeep} (which copies nothing when nothing needs redacting), except access lines
 * ({@link AccessLine}), which are built from non-sensitive fields only. Written to `destination`,
 * or else to stdout through {@link stdoutDestination} (the lines of each event-loop turn in one
 * write, never blocking on a full pipe, flushed on exit). The per-request scope and access log are `request-logging.ts`.
 */
export async function createRootLogger(config: AppConfig, destination?: DestinationStream): Promise<Logger> {
  let stream = destination;
  if (!stream && config.log.pretty) {
    const pretty = await import('pino-pretty').catch(() => undefined);
    if (pretty) stream = pretty.default({ colorize: process.stdout.isTTY, sync: true, translateTime: 'HH:MM:ss.l' });
  }
  // stdout written once per event-loop turn, synchronously (destination.ts: why not pino's default).
  stream ??= stdoutDestination();
  return pino(
    {
      level: config.log.level,
      base: { service: 'gatehouse' },
      timestamp: isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        // An access line is made of fields known not to need it (request-logging.ts).
        log: (object) => (object instanceof AccessLine ? object : (redactDeep(object) as Record<string, unknown>)),
      },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    stream,
  );
}

/** The second {@link isoTime} last formatted (ms since the epoch, a multiple of 1000), and its text up to the milliseconds. */
let formattedSecond = Number.NaN;
let secondPrefix = '';

/**
 * pino's timestamp field, `,"time":"2026-11-30T02:05:58.123Z"` — exactly what
 * `pino.stdTimeFunctions.isoTime` writes (`Date#toISOString` of `Date.now()`), with the part up
 * to the seconds formatted once per second instead of once per record. `now`: ms since the
 * epoch (for tests).
 */
export function isoTime(now: number = Date.now()): string {
  const ms = now % 1000;
  if (!Number.isInteger(now) || ms < 0) return `,"time":"${new Date(now).toISOString()}"`;
  const second = now - ms;
  if (second !== formattedSecond) {
    const iso = new Date(second).toISOString();
    // `…:ss.000Z`: everything before the milliseconds (years past 9999 have more digits in front).
    secondPrefix = `,"time":"${iso.slice(0, -4)}`;
    formattedSecond = second;
  }
  return `${secondPrefix}${ms < 10 ? '00' : ms < 100 ? '0' : ''}${ms}Z"`;
}
