import { STATUS_CODES } from 'node:http';
import { ProtocolError, SdkError, SdkHttpError, SseError, UnauthorizedError } from '@modelcontextprotocol/client';

/**
 * An error whose message Gatehouse wrote itself from fixed words, codes and numbers, and which
 * holds no configured value: {@link describeUpstreamError} passes its message through.
 */
export class DescribedError extends Error {}

/** Words for the error codes starting or reaching an upstream most often ends in. */
const CODES: Record<string, string> = {
  ENOENT: 'no such file or directory (the command or working directory does not exist)',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  ENOEXEC: 'not an executable',
  ENOTDIR: 'not a directory',
  E2BIG: 'argument list or environment too long',
  EMFILE: 'too many open files',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory',
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset by the peer',
  ECONNABORTED: 'connection aborted',
  EPIPE: 'broken pipe',
  ETIMEDOUT: 'timed out connecting',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed (temporary)',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  ERR_INVALID_ARG_VALUE: 'an argument, environment or header value is not valid there (e.g. it contains a NUL character)',
  ERR_INVALID_ARG_TYPE: 'an argument has the wrong type',
  ERR_INVALID_URL: 'invalid URL',
  ERR_INVALID_CHAR: 'invalid character in a header',
  ERR_INVALID_HTTP_TOKEN: 'invalid header name',
  ERR_TLS_CERT_ALTNAME_INVALID: "the server's TLS certificate does not match its host name",
  DEPTH_ZERO_SELF_SIGNED_CERT: "the server's TLS certificate is self-signed",
  SELF_SIGNED_CERT_IN_CHAIN: "the server's TLS certificate chain is self-signed",
  CERT_HAS_EXPIRED: "the server's TLS certificate has expired",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: "the server's TLS certificate cannot be verified",
  UND_ERR_CONNECT_TIMEOUT: 'timed out connecting',
  UND_ERR_HEADERS_TIMEOUT: 'timed out waiting for response headers',
  UND_ERR_BODY_TIMEOUT: 'timed out reading the response body',
  UND_ERR_SOCKET: 'the connection failed',
  UND_ERR_CLOSED: 'the connection closed',
  UND_ERR_INVALID_ARG: 'invalid request (a header or URL value is not valid)',
  UND_ERR_ABORTED: 'aborted',
  ABORT_ERR: 'aborted',
  REQUEST_TIMEOUT: 'timed out',
  CONNECTION_CLOSED: 'the connection closed',
  NOT_CONNECTED: 'not connected',
  SEND_FAILED: 'sending failed',
  INVALID_RESULT: 'the upstream sent a malformed result',
  ERA_NEGOTIATION_FAILED: 'protocol version negotiation failed',
  CLIENT_HTTP_UNEXPECTED_CONTENT: 'the upstream answered with an unexpected content type',
};

/** Fixed messages of undici's code-less network errors (the cause of fetch's "fetch failed"), in words. */
const FETCH_PHRASES: Record<string, string> = {
  'bad port': 'the port is one fetch refuses to connect to (a "bad port" of the Fetch standard, e.g. 1, 25, 6000)',
  'unknown scheme': 'the URL scheme is not supported',
  'redirect count exceeded': 'too many redirects',
  'URL scheme must be a HTTP(S) scheme': 'the URL scheme is not http or https',
};

const CODE = /^[A-Z][A-Z0-9_]{1,63}$/;
const MAX_CAUSES = 5;

const codeOf = (error: object): string | undefined => {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && CODE.test(code) ? code : undefined;
};

/** `spawn`, `connect`, `getaddrinfo`…: the first word of a Node system error's syscall (the rest names a path). */
const syscallOf = (error: object): string | undefined => {
  const syscall = (error as { syscall?: unknown }).syscall;
  return typeof syscall === 'string' ? /^[a-z_]+/i.exec(syscall)?.[0] : undefined;
};

function statusOf(error: object): number | undefined {
  const status = (error as { status?: unknown }).status;
  return typeof status === 'number' && Number.isInteger(status) && status >= 100 && status < 600 ? status : undefined;
}

/**
 * What went wrong starting or reaching an upstream, described by its code — never by echoing
 * the underlying message, which for Node and fetch errors quotes the offending value (a token
 * with a NUL byte came back `util.inspect`-escaped in ERR_INVALID_ARG_VALUE; fetch quotes an
 * invalid header value; SDK HTTP errors carry the upstream's response body; JSON parse errors
 * quote the text). Shapes, in order:
 * - {@link DescribedError}: its own message (Gatehouse's words);
 * - `ProtocolError` (a JSON-RPC error the upstream sent): `upstream error <code>: <message>`
 *   (the upstream's words: mask them with the connection's values before showing them);
 * - SDK HTTP errors: `HTTP <status> <reason phrase>`, plus the SDK code (SSE stream errors and
 *   `UnauthorizedError` likewise);
 * - errors with a code (`ENOENT`, `ECONNREFUSED`, `ERR_INVALID_ARG_VALUE`, `UND_ERR_*`, SDK
 *   codes): `<CODE>: <fixed words>` and the syscall (`spawn`, `connect`); a code-less wrapper
 *   (`fetch failed`) is described by its `cause`;
 * - anything else: `unexpected <ErrorName>` only.
 */
export function describeUpstreamError(error: unknown): string {
  let current: unknown = error;
  for (let depth = 0; depth < MAX_CAUSES && typeof current === 'object' && current !== null; depth++) {
    if (current instanceof DescribedError) return current.message;
    if (current instanceof ProtocolError) return `upstream error ${current.code}: ${current.message.split(LINE)[0].slice(0, 300)}`;
    const status = statusOf(current);
    if (current instanceof SdkHttpError || (status !== undefined && current instanceof SdkError)) {
      return `HTTP ${status ?? '?'}${status && STATUS_CODES[status] ? ` ${STATUS_CODES[status]}` : ''} (${String(current.code)})`;
    }
    // The legacy SSE transport: `code` is the HTTP status of the event stream (undefined for a network error).
    if (current instanceof SseError) {
      const sse = (current as { code?: unknown }).code;
      if (typeof sse === 'number' && sse >= 100 && sse < 600) return `HTTP ${sse}${STATUS_CODES[sse] ? ` ${STATUS_CODES[sse]}` : ''} (SSE stream)`;
      // A network failure reaches it only as text ("SSE error: TypeError: fetch failed: connect
      // ECONNREFUSED 127.0.0.1:9"): take a known code from it, nothing else.
      const known = /\b([A-Z][A-Z0-9_]{2,63})\b/g;
      for (const [, word] of current.message.matchAll(known)) if (CODES[word]) return `${word}: ${CODES[word]} (SSE stream)`;
      return 'the SSE stream failed';
    }
    // fetch's own network error: its cause is a code-less undici error with a fixed phrase.
    if (current instanceof TypeError && current.message === 'fetch failed') {
      const cause = (current as { cause?: unknown }).cause;
      const phrase = cause instanceof Error && !codeOf(cause) ? FETCH_PHRASES[cause.message] : undefined;
      if (phrase || cause === undefined || cause === null) return `the HTTP request failed (${phrase ?? 'fetch failed'})`;
    }
    if (current instanceof UnauthorizedError) return 'HTTP 401 Unauthorized (the upstream requires authorization)';
    const code = codeOf(current);
    if (code) {
      const syscall = syscallOf(current);
      const words = CODES[code] ?? (current instanceof SdkError ? code.toLowerCase().replace(/_/g, ' ') : undefined);
      const described = `${code}${words ? `: ${words}` : ''}${syscall ? ` (${syscall})` : ''}`;
      const cause = (current as { cause?: unknown }).cause;
      // An SDK error wrapping a network failure: say both (e.g. negotiation failed: ECONNREFUSED).
      return current instanceof SdkError && typeof cause === 'object' && cause !== null ? `${described}: ${describeUpstreamError(cause)}` : described;
    }
    if (current instanceof SyntaxError) return 'the upstream sent text that is not valid JSON';
    const cause = (current as { cause?: unknown }).cause;
    if (cause === undefined || cause === null) break;
    current = cause;
  }
  const name = error instanceof Error ? error.name : typeof error;
  return `unexpected ${/^[A-Za-z]{1,40}$/.test(name) ? name : 'error'} (details withheld: they may quote configured values)`;
}

const LINE = /\r\n|\r|\n/;
