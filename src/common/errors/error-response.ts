import { HttpException } from '@nestjs/common';
import { AppError } from './app-error.js';
import { isDatabaseUnavailable } from './database-unavailable.js';
import { codeForStatus, ERROR_STATUS, ErrorCode } from './error-code.js';

/** The body of every error response: `{ "error": { "code", "message", "requestId" } }`. */
export interface ErrorBody {
  error: { code: string; message: string; requestId: string; details?: Record<string, unknown> };
}

export interface MappedError {
  status: number;
  code: ErrorCode | string;
  message: string;
  details?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** True when the error was unexpected: log it with its stack, show the client nothing of it. */
  unexpected: boolean;
}

/** Fastify's own errors (body parsing, limits) that clients cause and may be told about. */
const FASTIFY_ERRORS: Record<string, { code: ErrorCode; message: (e: Error) => string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { code: ErrorCode.PayloadTooLarge, message: () => 'Request body exceeds the maximum allowed size (HTTP_MAX_REQUEST_SIZE)' },
  FST_ERR_CTP_INVALID_JSON_BODY: { code: ErrorCode.InvalidJson, message: () => 'Request body is not valid JSON' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: ErrorCode.InvalidJson, message: () => 'Request body is empty; expected a JSON document' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: ErrorCode.UnsupportedMediaType, message: () => 'Unsupported Content-Type; send application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: ErrorCode.BadRequest, message: () => 'Content-Length does not match the body' },
  FST_ERR_CTP_INVALID_TYPE: { code: ErrorCode.BadRequest, message: () => 'Content-Type header is malformed' },
  FST_ERR_BAD_URL: { code: ErrorCode.BadRequest, message: () => 'The request URL is not valid percent-encoded UTF-8' },
  FST_ERR_MAX_PARAM_LENGTH: { code: ErrorCode.UriTooLong, message: () => 'A path segment of the request URL is too long' },
};

function isFastifyError(e: unknown): e is Error & { code: string; statusCode?: number } {
  return e instanceof Error && String((e as { code?: unknown }).code).startsWith('FST_');
}

/** What a client is told when the database cannot be reached (no host, port or driver detail). */
export const DATABASE_UNAVAILABLE_MESSAGE = 'The database is unavailable; try again shortly';

/**
 * Maps anything thrown while serving a request to a status, a stable code and a message
 * that is safe to show. The database being unreachable, hung or refusing work (see
 * `isDatabaseUnavailable`) is `503 service_unavailable` with `Retry-After: 5`. Unknown errors
 * become a plain `internal_error`: no stack, no driver message, no SQL ever reaches a client.
 */
export function mapError(error: unknown): MappedError {
  if (error instanceof AppError) {
    return { status: error.status, code: error.code, message: error.message, details: error.details, ...(error.headers ? { headers: error.headers } : {}), unexpected: false };
  }
  // An outage is not a bug: tell the client to come back (and nothing about the database).
  if (isDatabaseUnavailable(error)) {
    return {
      status: 503,
      code: ErrorCode.ServiceUnavailable,
      message: DATABASE_UNAVAILABLE_MESSAGE,
      headers: { 'retry-after': '5' },
      unexpected: false,
    };
  }
  // Nest's Fastify adapter wraps Fastify's own 4xx errors (body parsing, limits) in an
  // HttpException whose cause is the original: map by its stable code.
  if (error instanceof HttpException && isFastifyError(error.cause)) return mapError(error.cause);
  if (error instanceof HttpException) {
    const status = error.getStatus();
    const response = error.getResponse();
    let message = error.message;
    if (typeof response === 'object' && response !== null && 'message' in response) {
      const m = (response).message;
      message = Array.isArray(m) ? m.join('; ') : String(m);
    }
    if (status === 404 && /^Cannot [A-Z]+ /.test(message)) message = message.replace(/^Cannot /, 'No route for ');
    return { status, code: codeForStatus(status), message, unexpected: status >= 500 };
  }
  if (isFastifyError(error)) {
    const known = FASTIFY_ERRORS[error.code];
    if (known) {
      return { status: ERROR_STATUS[known.code], code: known.code, message: known.message(error), unexpected: false };
    }
    const status = error.statusCode && error.statusCode >= 400 ? error.statusCode : 500;
    if (status < 500) return { status, code: codeForStatus(status), message: error.message, unexpected: false };
  }
  if (error instanceof SyntaxError && (error as { statusCode?: number }).statusCode === 400) {
    return { status: 400, code: ErrorCode.InvalidJson, message: 'Request body is not valid JSON', unexpected: false };
  }
  return { status: 500, code: ErrorCode.Internal, message: 'Internal server error', unexpected: true };
}
