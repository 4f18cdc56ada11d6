/**
 * An HTTP client for URLs a remote party chose (Client ID Metadata Documents, later: logos,
 * JWKS of clients), safe against server-side request forgery:
 *
 * - `https:` only (a test may allow `http:` through {@link SafeFetchOptions.allowHttp});
 * - every address the host name resolves to is checked, and the connection is made to the
 *   checked address (undici's `connect.lookup`), so DNS rebinding between check and connect is
 *   impossible; loopback, private (RFC 1918, ULA), link-local, CGNAT, multicast, reserved and
 *   the cloud metadata addresses are refused unless `allowPrivate`;
 * - no redirects (a 3xx is an error: a redirect could lead anywhere the check did not see);
 * - a time limit on the whole exchange and a size limit on the body (counted as it arrives,
 *   whatever `Content-Length` says);
 * - successful answers cached (lru-cache) for their `Cache-Control: max-age`, bounded.
 *
 * Written on undici rather than taken from a library: the SSRF-filtering agents on npm either
 * check the address after connecting or do not cover IPv6 ranges; this one is small enough to
 * read whole (docs/oauth-server.md, "Client ID Metadata Documents").
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import { Agent, request } from 'undici';

/** Why a fetch was refused or failed; `message` names the rule and never includes a response body. */
export class SafeFetchError extends Error {
  override name = 'SafeFetchError';
}

/** A fetched document. */
export interface SafeFetchResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface SafeFetchOptions {
  /** Allow loopback, private and link-local addresses (a development setting). */
  allowPrivate: boolean;
  /** Largest body accepted, in bytes. */
  maxBytes: number;
  /** Limit for connecting, sending and receiving the whole answer, in ms. */
  timeoutMs: number;
  /** Cached answers kept at most (entries), and for how long at most/least (ms). */
  cache?: { max: number; maxTtlMs: number; minTtlMs: number };
  /** Test only: accept `http:` too. */
  allowHttp?: boolean;
  /** Test only: extra CA certificates (PEM) to trust. */
  ca?: string | string[];
  /** Test only: DNS resolver (same shape as `dns.lookup` with `all: true`). */
  lookup?: (hostname: string, callback: (error: Error | null, addresses: LookupAddress[]) => void) => void;
}

/** Addresses no fetch of a remote party's choice may reach (IANA special-purpose registries). */
function blockedRanges(): BlockList {
  const list = new BlockList();
  const v4: [string, number][] = [
    ['0.0.0.0', 8],
    ['10.0.0.0', 8],
    ['100.64.0.0', 10],
    ['127.0.0.0', 8],
    ['169.254.0.0', 16],
    ['172.16.0.0', 12],
    ['192.0.0.0', 24],
    ['192.0.2.0', 24],
    ['192.88.99.0', 24],
    ['192.168.0.0', 16],
    ['198.18.0.0', 15],
    ['198.51.100.0', 24],
    ['203.0.113.0', 24],
    ['224.0.0.0', 4],
    ['240.0.0.0', 4],
  ];
  for (const [a, bits] of v4) list.addSubnet(a, bits, 'ipv4');
  const v6: [string, number][] = [
    ['::', 128],
    ['::1', 128],
    ['64:ff9b::', 96],
    ['64:ff9b:1::', 48],
    ['100::', 64],
    ['2001::', 23],
    ['2001:db8::', 32],
    ['2002::', 16],
    ['fc00::', 7],
    ['fe80::', 10],
    ['fec0::', 10],
    ['ff00::', 8],
  ];
  for (const [a, bits] of v6) list.addSubnet(a, bits, 'ipv6');
  return list;
}

const BLOCKED = blockedRanges();

/** True when `address` (an IP literal) is loopback, private, link-local or otherwise not public. */
export function isPrivateAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped) return BLOCKED.check(mapped[1], 'ipv4');
  const family = isIP(bare);
  if (family === 0) return true;
  return BLOCKED.check(bare, family === 4 ? 'ipv4' : 'ipv6');
}

/** max-age of a `Cache-Control` value in ms, or undefined. */
function maxAgeMs(cacheControl: string | undefined): number | undefined {
  if (!cacheControl || /(?:^|,)\s*(?:no-store|no-cache)\b/i.test(cacheControl)) return cacheControl ? 0 : undefined;
  const m = /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(cacheControl);
  return m ? Number(m[1]) * 1000 : undefined;
}

/** See the file comment. One instance per purpose; `close()` releases its connections. */
export class SafeFetch {
  private readonly agent: Agent;
  private readonly cache: LRUCache<string, SafeFetchResponse>;
  private readonly cacheTtl: { max: number; min: number };

  constructor(private readonly options: SafeFetchOptions) {
    const resolve = options.lookup ?? ((hostname, callback) => dnsLookup(hostname, { all: true }, callback));
    this.agent = new Agent({
      connect: {
        ...(options.ca ? { ca: options.ca } : {}),
        lookup: (hostname, opts, callback) => {
          resolve(hostname, (error, addresses) => {
            if (error) return callback(error, '', 4);
            const refused = options.allowPrivate ? undefined : addresses.find((a) => isPrivateAddress(a.address));
            if (refused || addresses.length === 0) {
              return callback(new SafeFetchError(`${hostname} resolves to a private or reserved address, which is not fetched`), '', 4);
            }
            // With `all` (Node's happy-eyeballs connect, e.g. for `localhost`), the answer is the list itself.
            if ((opts as { all?: boolean }).all) return (callback as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, addresses);
            callback(null, addresses[0].address, addresses[0].family);
          });
        },
      },
      maxResponseSize: options.maxBytes,
    });
    const c = options.cache ?? { max: 500, maxTtlMs: 24 * 3_600_000, minTtlMs: 30_000 };
    this.cacheTtl = { max: c.maxTtlMs, min: c.minTtlMs };
    this.cache = new LRUCache({ max: c.max, ttl: c.minTtlMs });
  }

  /**
   * GETs `url`. Resolves for any status (the caller judges it) except redirects.
   * @throws SafeFetchError for a refused URL or address, a redirect, a body over `maxBytes`, a timeout or a network error
   */
  async get(url: string, headers: Record<string, string> = {}): Promise<SafeFetchResponse> {
    const hit = this.cache.get(url);
    if (hit) return hit;
    const result = await this.send(url, 'GET', headers);
    if (result.status === 200) {
      const flat = result.headers;
      const ttl = Math.min(this.cacheTtl.max, Math.max(this.cacheTtl.min, maxAgeMs(flat['cache-control']) ?? this.cacheTtl.min));
      if (maxAgeMs(flat['cache-control']) !== 0) this.cache.set(url, result, { ttl });
    }
    return result;
  }

  /**
   * A `fetch`-shaped client on the same rules (the SDK's `FetchLike`, for token, revocation and
   * registration requests to an authorization server a remote party named): any method, a string
   * or `URLSearchParams` body, never cached, never redirected. Resolves to a web `Response`.
   * @throws SafeFetchError as {@link get}
   */
  readonly fetch = async (input: string | URL, init: RequestInit = {}): Promise<Response> => {
    const headers: Record<string, string> = {};
    new Headers(init.headers).forEach((value, key) => (headers[key] = value));
    const body = init.body === undefined || init.body === null ? undefined : typeof init.body === 'string' ? init.body : init.body instanceof URLSearchParams ? init.body.toString() : undefined;
    if (init.body != null && body === undefined) throw new SafeFetchError('only string and URLSearchParams bodies are sent');
    if (init.body instanceof URLSearchParams && !headers['content-type']) headers['content-type'] = 'application/x-www-form-urlencoded';
    const result = await this.send(String(input), (init.method ?? 'GET').toUpperCase(), headers, body);
    const noBody = result.status === 204 || result.status === 304;
    return new Response(noBody ? null : new Uint8Array(result.body), { status: result.status, headers: result.headers });
  };

  /** One request under every rule of this client; the caller judges the status. */
  private async send(url: string, method: string, headers: Record<string, string>, body?: string): Promise<SafeFetchResponse> {
    const parsed = URL.parse(url);
    if (!parsed) throw new SafeFetchError('the URL is not valid');
    if (parsed.protocol !== 'https:' && !(this.options.allowHttp && parsed.protocol === 'http:')) throw new SafeFetchError('only https: URLs are fetched');
    if (parsed.username || parsed.password) throw new SafeFetchError('URLs with credentials are not fetched');
    const literal = parsed.hostname.replace(/^\[|\]$/g, '');
    if (isIP(literal) !== 0 && !this.options.allowPrivate && isPrivateAddress(literal)) {
      throw new SafeFetchError(`${parsed.hostname} is a private or reserved address, which is not fetched`);
    }
    const signal = AbortSignal.timeout(this.options.timeoutMs);
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(parsed, { method, headers: { 'user-agent': 'Gatehouse', ...headers }, body, dispatcher: this.agent, signal, maxRedirections: 0 } as Parameters<typeof request>[1]);
    } catch (error) {
      throw this.failure(error, signal);
    }
    if (response.statusCode >= 300 && response.statusCode < 400) {
      await response.body.dump().catch(() => undefined);
      throw new SafeFetchError(`the server answered with a redirect (${response.statusCode}), which is not followed`);
    }
    const declared = Number(response.headers['content-length']);
    if (Number.isFinite(declared) && declared > this.options.maxBytes) {
      response.body.destroy();
      throw new SafeFetchError(`the document is larger than ${this.options.maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > this.options.maxBytes) {
          response.body.destroy();
          throw new SafeFetchError(`the document is larger than ${this.options.maxBytes} bytes`);
        }
        chunks.push(chunk);
      }
    } catch (error) {
      throw this.failure(error, signal);
    }
    const flat: Record<string, string> = {};
    for (const [k, v] of Object.entries(response.headers)) if (v !== undefined) flat[k] = Array.isArray(v) ? v.join(', ') : v;
    return { status: response.statusCode, headers: flat, body: Buffer.concat(chunks) };
  }

  /** Forgets cached answers. */
  clear(): void {
    this.cache.clear();
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private failure(error: unknown, signal: AbortSignal): SafeFetchError {
    if (error instanceof SafeFetchError) return error;
    if (signal.aborted) return new SafeFetchError(`no complete answer within ${this.options.timeoutMs} ms`);
    const cause = (error as { cause?: unknown })?.cause;
    if (cause instanceof SafeFetchError) return cause;
    const code = (error as { code?: string })?.code;
    if (code === 'UND_ERR_RES_EXCEEDED_MAX_SIZE') return new SafeFetchError(`the document is larger than ${this.options.maxBytes} bytes`);
    return new SafeFetchError(`the document could not be fetched (${code ?? (error as Error)?.message ?? 'network error'})`, { cause: error });
  }
}
