import { ERROR_STATUS, type ErrorCode } from './error-code.js';

/**
 * A domain error that is safe to show: its message is written for the client and names the
 * field or resource at fault. Anything that is not an AppError (or a Nest HttpException)
 * reaches clients only as a generic `internal_error`.
 */
export class AppError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: { status?: number; details?: Record<string, unknown>; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(message, { cause: options.cause });
    this.name = 'AppError';
    this.status = options.status ?? ERROR_STATUS[code];
    this.details = options.details;
    this.headers = options.headers;
  }

  /** Response headers that belong to the error (e.g. `WWW-Authenticate` on a 401). */
  readonly headers: Record<string, string> | undefined;

  /** Extra, non-secret, machine-readable context (e.g. `{ field: "name" }`). */
  readonly details: Record<string, unknown> | undefined;
}
