import { pino, type DestinationStream, type Logger } from 'pino';
import type { AppConfig } from '../../config/config.schema.js';
import { redactDeep } from './redact.js';

/**
 * The root pino logger. JSON in production (one object a line, for the cluster's log
 * collector); human-readable only when `LOG_FORMAT=pretty` or in development, and only if
 * the dev dependency `pino-pretty` is installed. Every record passes through
 * {@link redactDeep} (which copies nothing when nothing needs redacting). The per-request
 * scope and access log are `request-logging.ts`.
 */
export async function createRootLogger(config: AppConfig, destination?: DestinationStream): Promise<Logger> {
  let stream = destination;
  if (!stream && config.log.pretty) {
    const pretty = await import('pino-pretty').catch(() => undefined);
    if (pretty) stream = pretty.default({ colorize: process.stdout.isTTY, sync: true, translateTime: 'HH:MM:ss.l' });
  }
  return pino(
    {
      level: config.log.level,
      base: { service: 'gatehouse' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: {
        level: (label) => ({ level: label }),
        log: (object) => redactDeep(object) as Record<string, unknown>,
      },
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
    },
    stream,
  );
}
