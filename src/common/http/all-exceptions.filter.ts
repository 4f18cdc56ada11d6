import { Catch, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { isDatabaseUnavailable } from '../errors/database-unavailable.js';
import { ErrorCode } from '../errors/error-code.js';
import { mapError, type ErrorBody } from '../errors/error-response.js';

/**
 * Sends every HTTP error as `{ "error": { "code", "message", "requestId" } }`. Expected
 * errors are logged at `warn` without a stack; unexpected ones at `error` with one, and the
 * client sees only `internal_error`.
 */
function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger?: PinoLogger): void {
  const mapped = mapError(error);
  if (mapped.unexpected) logger?.error({ err: error, requestId: request.id }, 'unhandled error');
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

const isMcpPath = (url: string) => url === '/mcp' || url.startsWith('/mcp/') || url.startsWith('/mcp?');

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
