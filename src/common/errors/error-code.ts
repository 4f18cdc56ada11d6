/**
 * Stable, documented error codes: clients branch on these, never on messages. Adding one is
 * fine; renaming one is a breaking change. Each has the HTTP status it maps to.
 */
export enum ErrorCode {
  BadRequest = 'bad_request',
  ValidationFailed = 'validation_failed',
  InvalidJson = 'invalid_json',
  /** The JSON body nests objects/arrays deeper than HTTP_MAX_JSON_DEPTH. */
  JsonTooDeep = 'json_too_deep',
  Unauthorized = 'unauthorized',
  Forbidden = 'forbidden',
  NotFound = 'not_found',
  MethodNotAllowed = 'method_not_allowed',
  NotAcceptable = 'not_acceptable',
  RequestTimeout = 'request_timeout',
  Conflict = 'conflict',
  PayloadTooLarge = 'payload_too_large',
  UriTooLong = 'uri_too_long',
  UnsupportedMediaType = 'unsupported_media_type',
  TooManyRequests = 'too_many_requests',
  HeadersTooLarge = 'headers_too_large',
  Internal = 'internal_error',
  BadGateway = 'bad_gateway',
  ServiceUnavailable = 'service_unavailable',
  GatewayTimeout = 'gateway_timeout',
}

export const ERROR_STATUS: Record<ErrorCode, number> = {
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.ValidationFailed]: 400,
  [ErrorCode.InvalidJson]: 400,
  [ErrorCode.JsonTooDeep]: 400,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.MethodNotAllowed]: 405,
  [ErrorCode.NotAcceptable]: 406,
  [ErrorCode.RequestTimeout]: 408,
  [ErrorCode.Conflict]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.UriTooLong]: 414,
  [ErrorCode.UnsupportedMediaType]: 415,
  [ErrorCode.TooManyRequests]: 429,
  [ErrorCode.HeadersTooLarge]: 431,
  [ErrorCode.Internal]: 500,
  [ErrorCode.BadGateway]: 502,
  [ErrorCode.ServiceUnavailable]: 503,
  [ErrorCode.GatewayTimeout]: 504,
};

/** The code for a bare HTTP status (from Nest's HttpException or Fastify). */
export function codeForStatus(status: number): ErrorCode {
  const found = (Object.entries(ERROR_STATUS) as [ErrorCode, number][]).find(([, s]) => s === status);
  if (found) return found[0];
  return status >= 500 ? ErrorCode.Internal : ErrorCode.BadRequest;
}
