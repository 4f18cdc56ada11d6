import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino, type DestinationStream, type Logger } from 'pino';
import type { Options as PinoHttpOptions } from 'pino-http';
import type { AppConfig } from '../../config/config.schema.js';
import { redactDeep, redactUrl } from './redact.js';

const PROBE_PATHS = new Set(['/healthz', '/readyz']);

/** Headers worth having in a request log line; everything else is left out, not redacted. */
const LOGGED_HEADERS = ['user-agent', 'content-type', 'content-length', 'mcp-protocol-version', 'mcp-method', 'accept'];

/**
 * The root pino logger. JSON in production (one object a line, for the cluster's log
 * collector); human-readable only when `LOG_FORMAT=pretty` or in development, and only if
 * the dev dependency `pino-pretty` is installed. Every record passes through
 * {@link redactDeep}.
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

/** pino-http options: one line per request with its id, method, route, status and time. */
export function httpLoggerOptions(logger: Logger): PinoHttpOptions<IncomingMessage, ServerResponse> {
  return {
    logger,
    // Fastify assigns the id (from X-Request-Id or a fresh UUID) before any middleware runs.
    genReqId: (req) => (req as IncomingMessage & { id?: string }).id ?? 'unknown',
    customAttributeKeys: { reqId: 'requestId' },
    quietReqLogger: true,
    // Probes every few seconds would drown the log. middie rewrites req.url; originalUrl is the path asked for.
    autoLogging: { ignore: (req) => PROBE_PATHS.has(((req as { originalUrl?: string }).originalUrl ?? req.url ?? '').split('?')[0]) },
    customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info'),
    serializers: {
      req: (req: { id: string; method: string; url: string; headers: Record<string, unknown>; remoteAddress?: string }) => ({
        id: req.id,
        method: req.method,
        url: redactUrl(req.url),
        headers: Object.fromEntries(LOGGED_HEADERS.filter((h) => req.headers[h] !== undefined).map((h) => [h, req.headers[h]])),
        remoteAddress: req.remoteAddress,
      }),
      // The std serializer reports null until headers are sent; the raw response knows.
      res: (res: { statusCode: number | null; raw?: { statusCode: number } }) => ({ statusCode: res.raw?.statusCode ?? res.statusCode }),
    },
  };
}
