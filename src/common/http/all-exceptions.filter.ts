import { STATUS_CODES } from 'node:http';
import { Catch, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { isDatabaseUnavailable } from '../errors/database-unavailable.js';
import { ErrorCode } from '../errors/error-code.js';
import { describeValue } from '../validation/describe-value.js';
import { mapError, type ErrorBody } from '../errors/error-response.js';
import { REQUEST_ID_HEADER } from './request-id.js';

/**
 * Sends every HTTP error as `{ "error": { "code", "message", "requestId" } }`. Expected
 * errors are logged at `warn` without a stack; unexpected ones at `error` with one, and the
 * client sees only `internal_error`.
 */
export function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger?: PinoLogger): void {
  const mapped = mapError(error);
  // Bounded: never the SQL parameters, driver detail or any other client-supplied value in full.
  if (mapped.unexpected) logger?.error({ err: loggableError(error), requestId: request.id }, 'unhandled error');
  // Outages: one line per request, without the error object (a query error carries the SQL
  // and its parameters).
  else if (isDatabaseUnavailable(error)) logger?.warn({ requestId: request.id, reason: rootMessage(error) }, 'database unavailable: answered 503');
  const body: ErrorBody = {
    error: {
      code: mapped.code,
      message: mapped.message,
      requestId: request.id,
      ...(mapped.details ? { details: mapped.details } : {}),
    },
  };
  if (reply.sent) return;
  // MCP clients read JSON-RPC: errors on /mcp (bad JSON, body too large, …) keep their HTTP
  // status but use the JSON-RPC error envelope (JSON-RPC 2.0 §5.1 codes).
  // A body over the limit is answered before it was read: the rest of it must not be taken
  // for the next request on a kept-alive connection.
  if (mapped.status === 413) void reply.header('connection', 'close');
  for (const [name, value] of Object.entries(mapped.headers ?? {})) void reply.header(name, value);
  const payload = isMcpPath(request.url) ? toJsonRpcError(mapped.code, mapped.message) : body;
  if (!reply.hasHeader(REQUEST_ID_HEADER)) void reply.header(REQUEST_ID_HEADER, request.id);
  void reply.status(mapped.status).header('content-type', 'application/json; charset=utf-8').send(payload);
}

/** The innermost `cause`/`driverError` message: e.g. "Query read timeout", "connect ECONNREFUSED 127.0.0.1:5432". */
function rootMessage(error: unknown): string {
  let e = error as { cause?: unknown; driverError?: unknown; message?: unknown } | undefined;
  for (let i = 0; i < 5 && e && typeof e === 'object'; i++) {
    const inner = (e.driverError ?? e.cause) as typeof e;
    if (!inner || typeof inner !== 'object') break;
    e = inner;
  }
  return typeof e?.message === 'string' ? e.message.slice(0, 200) : 'unknown';
}

/** Whether `url` (path and query) is the MCP endpoint, whose errors use the JSON-RPC envelope. */
export const isMcpPath = (url: string) => url === '/mcp' || url.startsWith('/mcp/') || url.startsWith('/mcp?');

/** Longest error message and stack kept in a log line (characters). */
const MAX_LOGGED_MESSAGE = 1_000;
const MAX_LOGGED_STACK = 8_000;

/**
 * What is logged of an unexpected error: its type, message and stack (cut), `code`, `severity`
 * and the same of up to three nested `cause`/`driverError`s — never other enumerable fields,
 * which on a TypeORM `QueryFailedError` are the SQL and every parameter value (client input of
 * any size, possibly a secret) and on a driver error the offending value (`detail`, `where`).
 */
export function loggableError(error: unknown, depth = 0): Record<string, unknown> | string {
  if (!(error instanceof Error)) return describeValue(error, 200);
  const e = error as Error & { code?: unknown; severity?: unknown; cause?: unknown; driverError?: unknown };
  const out: Record<string, unknown> = {
    type: e.name,
    message: cap(e.message, MAX_LOGGED_MESSAGE),
    ...(typeof e.stack === 'string' ? { stack: cap(e.stack, MAX_LOGGED_STACK) } : {}),
    ...(typeof e.code === 'string' || typeof e.code === 'number' ? { code: e.code } : {}),
    ...(typeof e.severity === 'string' ? { severity: e.severity } : {}),
  };
  const inner = e.driverError ?? e.cause;
  if (inner !== undefined && depth < 3) out.cause = loggableError(inner, depth + 1);
  return out;
}

const cap = (s: string, max: number) => (s.length > max ? `${s.slice(0, max)}… (${s.length} characters)` : s);

/**
 * A complete HTTP/1.1 error response, for errors answered on the raw socket before Fastify
 * has a request (431 headers too large, 400 malformed request, 408 request timeout): the
 * documented envelope (JSON-RPC error on `/mcp`) with a fresh request id, `Connection: close`.
 */
export function rawErrorResponse(status: number, code: ErrorCode, message: string, url: string | undefined, requestId: string): string {
  const payload = JSON.stringify(url !== undefined && isMcpPath(url) ? toJsonRpcError(code, message) : ({ error: { code, message, requestId } } satisfies ErrorBody));
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(payload)}\r\n${REQUEST_ID_HEADER}: ${requestId}\r\nConnection: close\r\n\r\n${payload}`
  );
}

function toJsonRpcError(code: ErrorCode | string, message: string): { jsonrpc: '2.0'; error: { code: number; message: string }; id: null } {
  const rpcCode = code === String(ErrorCode.InvalidJson) ? -32700 : code === String(ErrorCode.Internal) ? -32603 : -32600;
  return { jsonrpc: '2.0', error: { code: rpcCode, message }, id: null };
}

@Catch()
export class AllExceptionsFilter implements ExceptionFilter {
  constructor(private readonly logger: PinoLogger) {
    logger.setContext(AllExceptionsFilter.name);
  }

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendError(exception, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), this.logger);
  }
}
