import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../errors/app-error.js';
import { ERROR_STATUS, ErrorCode } from '../errors/error-code.js';
import { jsonDepthExceeds } from '../validation/json-depth.js';
import { rawErrorResponse, sendError } from './all-exceptions.filter.js';
import { protectIds } from './json-rpc-ids.js';

/** How long a socket whose body was cut may linger after the 408 (its remaining bytes are read and dropped), ms. */
const LINGER_MS = 1_000;

/**
 * Fastify's `clientErrorHandler`: errors Node's HTTP parser raises before there is a request
 * — headers over the size limit (431, which includes an over-long request line: Node counts
 * it against `--max-http-header-size`, 16 KiB), the whole-request timeout
 * (`HTTP_REQUEST_TIMEOUT`, 408), any other malformed request (400) — answered in the
 * documented envelope (JSON-RPC error body when the request line names `/mcp`) instead of
 * Fastify's own body, then the connection is closed.
 */
export function clientErrorHandler(error: Error & { code?: string; rawPacket?: unknown }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const [status, code, message] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, ErrorCode.HeadersTooLarge, 'Request headers (or the request line) exceed the maximum allowed size (16 KiB)']
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, ErrorCode.RequestTimeout, 'The request was not received within HTTP_REQUEST_TIMEOUT']
        : [400, ErrorCode.BadRequest, 'Malformed HTTP request'];
  // The request line, when the parser got that far: `/mcp` gets a JSON-RPC body.
  const line = Buffer.isBuffer(error.rawPacket) ? error.rawPacket.subarray(0, 512).toString('latin1') : '';
  const url = /^[A-Z]+ (\S+)/.exec(line)?.[1];
  if (socket.writable) socket.write(rawErrorResponse(status, code, message, url, randomUUID()));
  socket.destroy();
}

/**
 * Fastify's `frameworkErrors`: the router's own refusals before any hook runs — a URL that is
 * not valid percent-encoded UTF-8 (400 `bad_request`) and a path parameter longer than
 * Fastify's `maxParamLength` (414 `uri_too_long`) — in the documented envelope.
 */
export function frameworkErrors(error: Error, request: FastifyRequest, reply: FastifyReply): void {
  sendError(error, request, reply);
}

export interface InputLimitOptions {
  /** Deepest JSON nesting accepted in a request body (HTTP_MAX_JSON_DEPTH). */
  maxJsonDepth: number;
  /** Time allowed to receive a request body once its headers are in, ms; 0: no separate bound (HTTP_BODY_TIMEOUT). */
  bodyTimeoutMs: number;
  /** Whether the server is closing (shutdown drain): new requests then get 503 in the envelope. */
  isClosing: () => boolean;
}

/**
 * Installs the request-input bounds that sit in front of every route:
 *
 * - the `application/json` body parser refuses bodies nested deeper than `maxJsonDepth` with
 *   `400 json_too_deep` (checked on the bytes before parsing, see {@link jsonDepthExceeds}),
 *   then parses as Fastify does (prototype-poisoning keys refused);
 * - a request whose body has not fully arrived `bodyTimeoutMs` after its headers is answered
 *   `408 request_timeout` (`Connection: close`) and its connection closed, long before the
 *   whole-request timeout;
 * - while the server closes (shutdown), a request arriving on a kept-alive connection gets
 *   `503 service_unavailable` in the envelope (Fastify's `return503OnClosing` writes its own
 *   body, so it is turned off in favour of this).
 *
 * Call before `listen` (the JSON parser must be registered before Nest registers its default).
 * Installs the parser; returns the last two checks as an `onRequest` hook for the caller to add
 * ({@link InputLimitsHook}; bootstrap runs it inside the request-logging hook, one hook instead of two).
 */
export function installInputLimits(app: NestFastifyApplication, fastify: FastifyInstance, options: InputLimitOptions): InputLimitsHook {
  const defaultJson = fastify.getDefaultJsonParser('error', 'error');
  const tooDeep = () =>
    new AppError(ErrorCode.JsonTooDeep, `Request body nests JSON objects/arrays deeper than ${options.maxJsonDepth} levels (HTTP_MAX_JSON_DEPTH)`, {
      details: { maxDepth: options.maxJsonDepth },
    });
  app.useBodyParser('application/json', { bodyLimit: fastify.initialConfig.bodyLimit }, (request, body, done) => {
    // A DELETE that names a JSON Content-Type but sends nothing (the MCP Python SDK's session
    // termination does: its headers always carry `content-type: application/json`) has no body,
    // not an empty JSON document: content on DELETE has no defined semantics (RFC 9110 §9.3.5).
    if (body.length === 0 && request.method === 'DELETE') {
      done(null, undefined);
      return;
    }
    if (jsonDepthExceeds(body, options.maxJsonDepth)) {
      done(tooDeep(), undefined);
      return;
    }
    // Fastify's parser takes the buffer too (secure-json-parse decodes it as UTF-8).
    const req = request as FastifyRequest;
    const mcp = req.url.startsWith('/mcp');
    void defaultJson(req, body as unknown as string, (error: Error | null, parsed?: unknown) => {
      // JSON-RPC ids are answered exactly as sent, also where JSON.parse changes them (json-rpc-ids.ts).
      if (!error && mcp) protectIds(req.raw, parsed, body);
      done(error && isPoisoningRefusal(error, body) ? new AppError(ErrorCode.InvalidJson, PROTOTYPE_POISONING_MESSAGE) : error, parsed);
    });
  });

  return (request, reply, done) => {
    if (options.isClosing()) {
      void reply.header('connection', 'close').header('retry-after', '1');
      sendError(new AppError(ErrorCode.ServiceUnavailable, 'Gatehouse is shutting down; retry (another replica will answer)'), request, reply);
      return;
    }
    // Checked again once this turn of the event loop is over: a body that came with the headers
    // (most small ones do) has been read by then and needs no timer, nor its two listeners.
    if (options.bodyTimeoutMs > 0 && expectsBody(request.raw) && !request.raw.complete) setImmediate(armBodyTimer, request, reply, options.bodyTimeoutMs);
    done();
  };
}

/**
 * The `onRequest` part of {@link installInputLimits}: 503 while closing, the body timer. Calls
 * `done` to go on, or answers and does not.
 */
export type InputLimitsHook = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => void;

/**
 * What a client is told for a well-formed body Fastify's parser refuses for its keys: a
 * `__proto__` key, or a `constructor` object with a `prototype` key (secure-json-parse with
 * `protoAction`/`constructorAction: 'error'`: assigned or merged somewhere, such an object would
 * change `Object.prototype` — prototype poisoning). "Not valid JSON" would send them looking for
 * a syntax error.
 */
export const PROTOTYPE_POISONING_MESSAGE =
  'Request body contains a "__proto__" key, or a "constructor" object with a "prototype" key; these are refused (prototype poisoning): rename or remove that key';

/**
 * Whether Fastify's JSON parser refused `body` (its `FST_ERR_CTP_INVALID_JSON_BODY`, which keeps
 * no cause) for poisoning keys rather than for its syntax: the plain `JSON.parse` takes it. Runs
 * only on a refused body.
 */
function isPoisoningRefusal(error: Error, body: Buffer): boolean {
  if ((error as { code?: unknown }).code !== 'FST_ERR_CTP_INVALID_JSON_BODY') return false;
  try {
    JSON.parse(body.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

const expectsBody = (raw: IncomingMessage) =>
  raw.headers['transfer-encoding'] !== undefined || (raw.headers['content-length'] !== undefined && raw.headers['content-length'] !== '0');

/** Answers 408 and closes the connection if the body, incomplete now, is still incomplete after `ms`. */
function armBodyTimer(request: FastifyRequest, reply: FastifyReply, ms: number): void {
  const raw = request.raw;
  if (raw.complete || raw.destroyed) return;
  const timer = setTimeout(() => {
    if (raw.complete) return;
    const socket = raw.socket;
    const cut = () => {
      socket.end();
      setTimeout(() => socket.destroy(), LINGER_MS).unref();
    };
    if (reply.sent || reply.raw.headersSent) {
      cut();
      return;
    }
    void reply.header('connection', 'close');
    reply.raw.once('finish', cut);
    sendError(
      new AppError(ErrorCode.RequestTimeout, `The request body was not received within ${ms} ms (HTTP_BODY_TIMEOUT)`, { status: ERROR_STATUS[ErrorCode.RequestTimeout] }),
      request,
      reply,
    );
  }, ms);
  timer.unref();
  const clear = () => clearTimeout(timer);
  raw.once('end', clear);
  reply.raw.once('close', clear);
}
