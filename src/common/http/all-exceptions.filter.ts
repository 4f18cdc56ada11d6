import { Catch, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { mapError, type ErrorBody } from '../errors/error-response.js';

/**
 * Sends every HTTP error as `{ "error": { "code", "message", "requestId" } }`. Expected
 * errors are logged at `warn` without a stack; unexpected ones at `error` with one, and the
 * client sees only `internal_error`.
 */
export function sendError(error: unknown, request: FastifyRequest, reply: FastifyReply, logger?: PinoLogger): void {
  const mapped = mapError(error);
  if (mapped.unexpected) logger?.error({ err: error, requestId: request.id }, 'unhandled error');
  const body: ErrorBody = {
    error: {
      code: mapped.code,
      message: mapped.message,
      requestId: request.id,
      ...(mapped.details ? { details: mapped.details } : {}),
    },
  };
  if (reply.sent) return;
  void reply.status(mapped.status).header('content-type', 'application/json; charset=utf-8').send(body);
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
