import { STATUS_CODES } from 'node:http';
import { DescribedError } from './error-description.js';

/** What an upstream's `WWW-Authenticate: Bearer …` challenge says (RFC 6750 §3, RFC 9728 §5.1). */
export interface BearerChallenge {
  /** `invalid_token`, `insufficient_scope`, … */
  error?: string;
  /** The scopes the upstream asks for (space-separated in the header). */
  scopes?: string[];
  /** RFC 9728 `resource_metadata`: where the upstream's protected-resource metadata is. */
  resourceMetadata?: string;
}

/**
 * An upstream answered an HTTP request 401 or 403: the request was refused before the MCP
 * message was processed (RFC 6750 §3.1), so it did not run. The message is Gatehouse's own
 * words (`HTTP 401 Unauthorized (invalid_token)`), never the upstream's description.
 */
export class UpstreamAuthError extends DescribedError {
  constructor(
    readonly status: 401 | 403,
    readonly challenge: BearerChallenge,
  ) {
    super(`HTTP ${status} ${STATUS_CODES[status]}${challenge.error && /^[a-z_]{1,40}$/.test(challenge.error) ? ` (${challenge.error})` : ''}`);
  }
}

/**
 * Parses the Bearer challenge of a `WWW-Authenticate` value (RFC 9110 §11.6.1 auth-params:
 * `token=token` or `token="quoted"`); other schemes are skipped. Undefined parts are absent.
 */
export function parseBearerChallenge(header: string | null | undefined): BearerChallenge {
  if (!header) return {};
  const at = header.search(/(^|[\s,])Bearer(\s|$)/i);
  if (at < 0) return {};
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))/g;
  re.lastIndex = at;
  for (let m = re.exec(header); m; m = re.exec(header)) {
    const name = m[1].toLowerCase();
    if (!(name in params)) params[name] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3];
  }
  return {
    ...(params.error ? { error: params.error } : {}),
    ...(params.scope ? { scopes: params.scope.split(' ').filter(Boolean) } : {}),
    ...(params.resource_metadata ? { resourceMetadata: params.resource_metadata } : {}),
  };
}

/** The {@link UpstreamAuthError} in `error` or its causes, if any. */
export function authErrorIn(error: unknown): UpstreamAuthError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    if (current instanceof UpstreamAuthError) return current;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

type Fetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

/**
 * A `fetch` for the SDK client transports of a server with `oauth`: a 401 or 403 answer is
 * thrown as an {@link UpstreamAuthError} carrying the parsed challenge (the SDK, without an
 * auth provider, would keep only the status), so the call can be refreshed and retried, or the
 * user asked to connect or grant more scopes.
 */
export function fetchObservingAuth(next: Fetch): Fetch {
  return async (input, init) => {
    const response = await next(input, init);
    if (response.status !== 401 && response.status !== 403) return response;
    await response.body?.cancel().catch(() => undefined);
    throw new UpstreamAuthError(response.status, parseBearerChallenge(response.headers.get('www-authenticate')));
  };
}
