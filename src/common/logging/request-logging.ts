import { AsyncLocalStorage } from 'node:async_hooks';
import type { ServerResponse } from 'node:http';
import { tracingChannel } from 'node:diagnostics_channel';
import { Global, Inject, Injectable, Module, Scope, type DynamicModule } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Logger as NestPinoLogger, PARAMS_PROVIDER_TOKEN, PinoLogger, type Params } from 'nestjs-pino';
import { pino, type Logger } from 'pino';
import { isProbePath } from '../http/host-origin.js';
import { redactUrl } from './redact.js';

/*
 * Why not nestjs-pino's LoggerModule with pino-http (as before): per request it ran a Nest
 * middleware through middie, built two or three pino child loggers eagerly (request id, the
 * serialized request, custom props), attached three listeners to the response, and handed the
 * raw `ServerResponse` to the record formatter, whose redaction walked it eight levels deep.
 * Together about a fifth of a fast-path `tools/call`'s CPU at `LOG_LEVEL=info`
 * (docs/benchmarks.md, issue 12). Here: one Fastify hook pair, a request-scoped child logger
 * built only if something inside the request logs, and the access line built from plain fields.
 * nestjs-pino's `PinoLogger` stays the injectable every service logs through.
 */

/** Headers worth having in an access log line (in this order, see {@link requestFields}); everything else is left out, not redacted. */
type LoggedHeader = 'user-agent' | 'content-type' | 'content-length' | 'mcp-protocol-version' | 'mcp-method' | 'accept';

/** The logging scope of one HTTP request: its id, and a child logger carrying it, built on first use. */
export class RequestLogScope {
  private child: Logger | undefined;

  constructor(
    private readonly root: Logger,
    readonly requestId: string,
  ) {}

  /** The root logger with `requestId` bound (created on first access; most requests log only their access line). */
  get logger(): Logger {
    return (this.child ??= this.root.child({ requestId: this.requestId }));
  }
}

const scopes = new AsyncLocalStorage<RequestLogScope>();

/** The logger of the request being served (with its `requestId`), or undefined outside one. */
export function requestLogger(): Logger | undefined {
  return scopes.getStore()?.logger;
}

/**
 * nestjs-pino's `PinoLogger` (what every service injects), reading the request scope of
 * {@link installRequestLogging} instead of the one pino-http's middleware used to set.
 * Outside a request it logs through the root logger given to {@link RequestLoggingModule}.
 */
@Injectable({ scope: Scope.TRANSIENT })
export class RequestScopedPinoLogger extends PinoLogger {
  private readonly root: Logger;

  constructor(@Inject(PARAMS_PROVIDER_TOKEN) params: Params) {
    super(params);
    this.root = (params.pinoHttp as { logger: Logger }).logger;
  }

  override get logger(): Logger {
    return scopes.getStore()?.logger ?? this.root;
  }
}

/**
 * Provides `PinoLogger` (request-scoped, see {@link RequestScopedPinoLogger}) and nestjs-pino's
 * Nest `Logger` over the given root logger, globally. No middleware: the request scope and
 * the access log come from {@link installRequestLogging}.
 */
@Global()
@Module({})
export class RequestLoggingModule {
  static forRoot(logger: Logger): DynamicModule {
    const params: Params = { pinoHttp: { logger } };
    return {
      module: RequestLoggingModule,
      providers: [{ provide: PARAMS_PROVIDER_TOKEN, useValue: params }, { provide: PinoLogger, useClass: RequestScopedPinoLogger }, NestPinoLogger],
      exports: [PARAMS_PROVIDER_TOKEN, PinoLogger, NestPinoLogger],
    };
  }
}

type LoggedRequest = FastifyRequest & { principal?: { id: string } };

/** An `onRequest` hook's body (see {@link installRequestLogging}'s `then`). */
export type OnRequestStep = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => void;

/**
 * The fields of one access log line (see {@link installRequestLogging}), in their output order.
 * Every field name in it is fixed here and none is sensitive (`req.headers` holds only
 * {@link LoggedHeader}s; the URL's credential parameters are masked), so redaction would
 * change nothing: the root logger passes it through as it is instead of walking it
 * (logger.ts; request-logging.spec.ts checks the premise).
 */
export class AccessLine {
  constructor(
    readonly requestId: string,
    readonly req: { id: string; method: string; url: string; headers: Record<string, unknown>; remoteAddress: string | undefined },
    readonly res: { statusCode: number } | undefined,
    /** ms */
    readonly responseTime: number | undefined,
    readonly principalId: string | undefined,
  ) {}
}

/**
 * The request fields of an access log line: id, method, URL (credentials in the query masked),
 * the {@link LoggedHeader}s (in that order; one the request lacks is undefined, which the JSON
 * line leaves out), peer address.
 */
export function requestFields(request: FastifyRequest): AccessLine['req'] {
  const h = request.headers;
  // One literal of a fixed shape, not a key added per header present (a megamorphic store each).
  const headers: Record<LoggedHeader, unknown> = {
    'user-agent': h['user-agent'],
    'content-type': h['content-type'],
    'content-length': h['content-length'],
    'mcp-protocol-version': h['mcp-protocol-version'],
    'mcp-method': h['mcp-method'],
    accept: h.accept,
  };
  return { id: request.id, method: request.method, url: redactUrl(request.url), headers, remoteAddress: request.raw.socket?.remoteAddress };
}

/**
 * Installs, as the first `onRequest` hook, the request logging scope (every line logged while
 * serving a request carries its `requestId`), and one access log line per request when its
 * response is written (`onResponse`) or the connection closes first — the client went away
 * while sending its request (`onRequestAbort`) or after it, before the response was complete
 * (the response's `'close'` without `'finish'`; Fastify's `onRequestAbort` only covers the first):
 * `{ requestId, req: { id, method, url, headers, remoteAddress }, res: { statusCode },
 * responseTime (ms), principalId }`, message `request completed` at info (warn at 4xx),
 * `request errored` at error (5xx), `request aborted` at info (no `res`). `/healthz` and `/readyz` are not
 * logged (probes every few seconds). Call before any other hook is added. `then`: an `onRequest`
 * hook to run first thing inside the scope (one hook where there would be two; it calls `done`
 * to go on, as a hook does).
 */
export function installRequestLogging(fastify: FastifyInstance, logger: Logger, then?: OnRequestStep): void {
  const write = accessLineWriter(logger);
  const started = Symbol('started');
  /** Set once the request's access line is written: one line per request, whichever event comes first. */
  const logged = Symbol('logged');
  /** The Fastify request of a raw response (for {@link closed}, one shared listener rather than a closure per request). */
  const requestOf = Symbol('request');
  type Timed = LoggedRequest & { [started]?: number; [logged]?: true };
  type Watched = ServerResponse & { [requestOf]?: FastifyRequest };
  /** A response's `'close'`: without `'finish'` before it, the client left before the answer was complete. */
  function closed(this: Watched): void {
    const request = this[requestOf];
    if (request && !this.writableFinished) line(request, undefined);
  }
  fastify.addHook(
    'onRequest',
    then
      ? (request, reply, done) => {
          (request as Timed)[started] = performance.now();
          (reply.raw as Watched)[requestOf] = request;
          reply.raw.on('close', closed);
          // `run`'s extra arguments go to `then`: no closure per request.
          scopes.run(new RequestLogScope(logger, request.id), then, request, reply, done);
        }
      : (request, reply, done) => {
          (request as Timed)[started] = performance.now();
          (reply.raw as Watched)[requestOf] = request;
          reply.raw.on('close', closed);
          scopes.run(new RequestLogScope(logger, request.id), done);
        },
  );
  /** The access line, once per request; `statusCode` undefined when the client went away before the response. */
  const line = (request: FastifyRequest, statusCode: number | undefined): void => {
    if ((request as Timed)[logged]) return;
    (request as Timed)[logged] = true;
    if (isProbePath(request.url)) return;
    const begun = (request as Timed)[started];
    const record = new AccessLine(
      request.id,
      requestFields(request),
      statusCode === undefined ? undefined : { statusCode },
      begun === undefined ? undefined : Math.round(performance.now() - begun),
      (request as LoggedRequest).principal?.id,
    );
    if (statusCode === undefined) write(record, 'info', 'request aborted');
    else if (statusCode >= 500) write(record, 'error', 'request errored');
    else if (statusCode >= 400) write(record, 'warn', 'request completed');
    else write(record, 'info', 'request completed');
  };
  fastify.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done) => {
    line(request, reply.raw.statusCode);
    done();
  });
  fastify.addHook('onRequestAbort', (request: FastifyRequest, done) => {
    line(request, undefined);
    done();
  });
}

/** The levels an access line is written at. */
export type AccessLevel = 'info' | 'warn' | 'error';

/** A UTF-16 surrogate: pino's string escaping (`asString`, up to 100 characters) leaves a lone one raw, JSON.stringify escapes it. */
const SURROGATE = /[\uD800-\uDFFF]/;
/** The messages of access lines. */
export type Messages = 'request completed' | 'request errored' | 'request aborted';

/** pino's internals the access line's own serialization reads (all in `pino.symbols`, pino's public export). */
interface PinoInternals {
  [key: symbol]: unknown;
}

/**
 * How {@link installRequestLogging} writes an access line: `logger[level](record, msg)`, or — the
 * same bytes, made in one `JSON.stringify` instead of pino's per-field `_asJson` (measured ~1.3
 * → ~0.65 µs a line) — the line put together here from pino's own pieces for this logger: its
 * level string (`{"level":"info"`), timestamp, bindings (`,"service":"gatehouse"`) and line end,
 * then the record's fields in order (pino writes top-level fields in key order, leaving out
 * undefined ones, strings as JSON strings, objects with `JSON.stringify`, exactly what one
 * `JSON.stringify` of the record does), then `"msg"`.
 *
 * pino is used as it is whenever the shortcut could differ: a logger with a mixin, hooks, a
 * nested key, a message prefix or key other than `msg`, redaction or serializers for these
 * fields, a destination that wants metadata (multistream), a log formatter that changes the
 * record, someone tracing pino's serialization (`tracing:pino_asJson`), or a top-level string
 * with a surrogate in it (pino writes a lone surrogate raw where JSON.stringify escapes it).
 */
export function accessLineWriter(logger: Logger): (record: AccessLine, level: AccessLevel, msg: Messages) => void {
  const viaPino = (record: AccessLine, level: AccessLevel, msg: Messages) => logger[level](record, msg);
  const s = pino.symbols;
  const internals = logger as unknown as PinoInternals;
  const hooks = internals[s.hooksSym] as { logMethod?: unknown; streamWrite?: unknown } | undefined;
  const serializers = (internals[s.serializersSym] ?? {}) as Record<string, unknown>;
  const stringifiers = (internals[s.stringifiersSym] ?? {}) as Record<string | symbol, unknown>;
  const fields: (keyof AccessLine)[] = ['requestId', 'req', 'res', 'responseTime', 'principalId'];
  const plain =
    internals[s.mixinSym] == null &&
    hooks?.logMethod == null &&
    hooks?.streamWrite == null &&
    internals[s.nestedKeySym] == null &&
    !internals[(s as unknown as Record<string, symbol>).msgPrefixSym] &&
    internals[s.messageKeySym] === 'msg' &&
    typeof internals[s.timeSym] === 'function' &&
    typeof internals[s.chindingsSym] === 'string' &&
    typeof internals[s.endSym] === 'string' &&
    Reflect.ownKeys(stringifiers).length === 0 &&
    fields.every((key) => serializers[key] === undefined);
  if (!plain) return viaPino;
  const asJson = tracingChannel('pino_asJson');
  const levels = internals[s.lsCacheSym] as Record<number, string>;
  const formatters = internals[s.formattersSym] as { log?: (object: Record<string, unknown>) => unknown };
  const messages = new Map<Messages, string>();
  for (const msg of ['request completed', 'request errored', 'request aborted'] as const) messages.set(msg, `,"msg":${JSON.stringify(msg)}`);
  return (record, level, msg) => {
    if (!logger.isLevelEnabled(level)) return;
    const num = logger.levels.values[level];
    const stream = internals[s.streamSym] as { write(line: string): unknown; [key: symbol]: unknown };
    if (
      asJson.hasSubscribers ||
      stream[s.needsMetadataGsym] === true ||
      typeof levels[num] !== 'string' ||
      SURROGATE.test(record.requestId) ||
      (record.principalId !== undefined && SURROGATE.test(record.principalId)) ||
      (formatters.log !== undefined && formatters.log(record as unknown as Record<string, unknown>) !== record)
    ) {
      viaPino(record, level, msg);
      return;
    }
    const time = (internals[s.timeSym] as () => string)();
    const body = JSON.stringify(record);
    // `{"requestId":…}` without its braces: the record always has requestId and req.
    stream.write(`${levels[num]}${time}${internals[s.chindingsSym] as string},${body.slice(1, -1)}${messages.get(msg)!}${internals[s.endSym] as string}`);
  };
}
