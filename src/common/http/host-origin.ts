import { isIPv6 } from 'node:net';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { AppConfig } from '../../config/config.schema.js';
import { ErrorCode } from '../errors/error-code.js';
import { REQUEST_ID_HEADER } from './request-id.js';

/** A `Host` header value split into its parts (RFC 9110 §7.2: `uri-host [ ":" port ]`). */
export interface ParsedHost {
  /** Lower-case; an IPv6 literal in brackets, in its canonical form (`[::1]`). */
  hostname: string;
  port: number | undefined;
}

/** Why a request is refused before routing: 400 for a malformed `Host`, 403 for a foreign one. */
export interface HostOriginRefusal {
  status: 400 | 403;
  code: ErrorCode.BadRequest | ErrorCode.Forbidden;
  message: string;
}

/** Paths answered whatever the `Host` (Kubernetes probes send `Host: <pod IP>:<port>`). */
export const PROBE_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);

/** Whether a request target (path, then maybe `?query`) is one of the {@link PROBE_PATHS}. */
export function isProbePath(url: string): boolean {
  const queryAt = url.indexOf('?');
  return PROBE_PATHS.has(queryAt === -1 ? url : url.slice(0, queryAt));
}

/** Methods a browser may send cross-site without side effects being expected of them (RFC 9110 §9.2.1). */
const SAFE_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * `reg-name` restricted to what DNS and container names use, or an IP literal, then an optional
 * port: no userinfo (`a@b`), no path, no spaces, no percent-encoding.
 */
const HOST_SYNTAX = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._~-]+))(?::(\d{0,5}))?$/;

/** How many characters of a refused header value an error message repeats. */
const SHOWN = 100;
const show = (value: string) => JSON.stringify(value.length > SHOWN ? `${value.slice(0, SHOWN)}…` : value);

/**
 * Parses a `Host` header value strictly (RFC 3986 §3.2.2 host, §3.2.3 port), or returns
 * undefined when it is not one: `a b`, `[::1`, `evil@localhost`, `host:99999`, empty.
 */
export function parseHost(value: string): ParsedHost | undefined {
  const match = HOST_SYNTAX.exec(value);
  if (!match) return undefined;
  const [, v6, name, portText] = match;
  let port: number | undefined;
  if (portText !== undefined && portText !== '') {
    port = Number(portText);
    if (port > 65535) return undefined;
  }
  if (v6 !== undefined) {
    if (!isIPv6(v6)) return undefined;
    return { hostname: new URL(`http://[${v6}]`).hostname, port };
  }
  return { hostname: name.toLowerCase(), port };
}

/** An allowed-hosts entry (`example.com`, `[::1]`, `::1`, even `example.com:443`) as {@link ParsedHost.hostname}. */
function normalizeAllowedHost(entry: string): string | undefined {
  const bare = entry.replace(/^\[|\]$/g, '');
  if (isIPv6(bare)) return new URL(`http://[${bare}]`).hostname;
  return parseHost(entry)?.hostname;
}

/** `scheme://host[:port]` of an `Origin` value, normalized; undefined when it is not an HTTP(S) origin (RFC 6454 §7). */
function parseOrigin(value: string): { origin: string; hostname: string; host: string } | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  // An Origin is exactly scheme://host[:port]: no path, query, userinfo or trailing slash.
  if (url.origin !== value.toLowerCase() || url.username !== '' || url.password !== '') return undefined;
  return { origin: url.origin, hostname: url.hostname, host: url.host };
}

/** What {@link HostOriginRules.check} needs of a request (a Fastify request, or a test's object). */
export interface RequestHead {
  method: string;
  /** The request target as received (`/api/v1/servers?x=1`). */
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** Node's `rawHeaders`: name, value, name, value… (to see a repeated `Host`). */
  rawHeaders: readonly string[];
}

/**
 * The one Host/Origin policy, for every route (`/mcp` and the admin API alike): DNS-rebinding
 * protection (MCP transports spec 2025-06-18+, "Security Warning": servers MUST validate
 * `Origin`; Host is checked too, since a rebound page reaches us under the attacker's host name)
 * and cross-site request protection for browsers. Configured by `HTTP_ALLOWED_HOSTS`,
 * `HTTP_CORS_ORIGINS`, `PUBLIC_URL`, `HTTP_DNS_REBINDING_PROTECTION` (see docs/auth.md,
 * "Browsers"). Pure: no I/O; {@link refusedByHostOrigin} applies it to Fastify.
 *
 * Rules, in order:
 * 1. `Host` must be well-formed and appear once (RFC 9112 §3.2: otherwise 400), on every path;
 *    a missing one is tolerated only on the probes. An absolute-form request target's authority
 *    stands in for `Host` below (RFC 9112 §3.2.2).
 * 2. The probes (`/healthz`, `/readyz`) pass: they reveal nothing, and Kubernetes sends the pod IP.
 * 3. With protection on, the host name must be an allowed host (any port), else 403.
 * 4. An `Origin`, when present, must be allowed — exactly listed (`PUBLIC_URL`'s origin,
 *    `HTTP_CORS_ORIGINS` except `*`), or an HTTP(S) origin whose host name is an allowed host, or
 *    the request's own origin — else 403: always for unsafe methods, and for every method with
 *    protection on.
 * 5. Unsafe methods (anything but GET, HEAD, OPTIONS) that a browser marks
 *    `Sec-Fetch-Site: cross-site` or `same-site` need an allowed `Origin` (rule 4), else 403.
 *    Non-browser clients send neither header and are unaffected.
 */
export class HostOriginRules {
  private readonly allowedHosts: ReadonlySet<string>;
  private readonly allowedOrigins: ReadonlySet<string>;
  /** The last `Host` value {@link check} parsed, and its parse (clients send the same one request after request). */
  private lastHost: string | undefined;
  private lastParsed: Readonly<ParsedHost> | undefined;
  /** The last `Host` and `Origin` {@link problem} found fine: the rules are fixed, so the verdict is too (no Origin parse per request). */
  private fineHost: string | undefined;
  private fineOrigin: string | undefined;

  /**
   * @param protection `HTTP_DNS_REBINDING_PROTECTION`
   * @param allowedHosts host names without port (`[::1]` or `::1` for IPv6)
   * @param allowedOrigins exact origins (`https://app.example.com`)
   */
  constructor(
    private readonly protection: boolean,
    allowedHosts: readonly string[],
    allowedOrigins: readonly string[],
  ) {
    this.allowedHosts = new Set(allowedHosts.map(normalizeAllowedHost).filter((h): h is string => h !== undefined));
    this.allowedOrigins = new Set(allowedOrigins.map((o) => parseOrigin(o.toLowerCase())?.origin).filter((o): o is string => o !== undefined));
  }

  /** The rules for a configuration (the same for the hook and `/mcp`'s own check). */
  static fromConfig(config: AppConfig): HostOriginRules {
    return new HostOriginRules(config.mcp.dnsRebindingProtection, config.mcp.allowedHosts, config.mcp.allowedOrigins);
  }

  /** Whether `hostname` (as {@link ParsedHost.hostname}) is an allowed host. */
  isAllowedHost(hostname: string): boolean {
    return this.allowedHosts.has(hostname);
  }

  /**
   * Whether an `Origin` value is allowed: listed exactly, or HTTP(S) on an allowed host name (any
   * port: the SDK's rule and the MCP conformance suite's), or the same origin as `host` (the
   * request's `Host` header, when given). `null` and anything unparsable are not.
   */
  isAllowedOrigin(origin: string, host?: string): boolean {
    const parsed = parseOrigin(origin);
    if (!parsed) return false;
    if (this.allowedOrigins.has(parsed.origin) || this.allowedHosts.has(parsed.hostname)) return true;
    return host !== undefined && parsed.host === host.toLowerCase();
  }

  /** {@link parseHost} of `host`, remembered for the last value (the hook and `/mcp`'s own check parse the same one). */
  private parsedHost(host: string): Readonly<ParsedHost> | undefined {
    if (host !== this.lastHost) {
      this.lastParsed = parseHost(host);
      this.lastHost = host;
    }
    return this.lastParsed;
  }

  /** The refusal for a request, or undefined when it may pass (see the class for the rules). */
  check(request: RequestHead): HostOriginRefusal | undefined {
    const raw = request.rawHeaders;
    let hosts = 0;
    for (let i = 0; i < raw.length; i += 2) if (raw[i].length === 4 && raw[i].toLowerCase() === 'host') hosts++;
    if (hosts > 1) return badRequest('more than one Host header (RFC 9112 §3.2)');
    const hostHeader = request.headers.host;
    const host = typeof hostHeader === 'string' ? hostHeader : undefined;
    const isProbe = isProbePath(request.url);
    if (host === undefined || host === '') return isProbe ? undefined : badRequest('the Host header is missing or empty');
    let parsed = this.parsedHost(host);
    if (!parsed) return badRequest(`the Host header ${show(host)} is not a valid host[:port]`);
    if (isProbe) return undefined;
    // An absolute-form target (`GET http://name/path`) names the host itself; the server must use
    // it rather than Host (RFC 9112 §3.2.2). Browsers never send one, but it must not bypass the check.
    let target = host;
    if (request.url.charCodeAt(0) !== 47 /* '/' */) {
      const authority = /^https?:\/\/([^/?#]*)/i.exec(request.url)?.[1];
      if (authority !== undefined) {
        target = authority;
        parsed = parseHost(authority);
        if (!parsed) return badRequest(`the request target's authority ${show(authority)} is not a valid host[:port]`);
      }
    }
    if (this.protection && !this.allowedHosts.has(parsed.hostname)) return forbidden(`Host ${show(target)} is not allowed (HTTP_ALLOWED_HOSTS)`);

    const unsafe = !SAFE_METHODS.has(request.method);
    const originHeader = request.headers.origin;
    const origin = typeof originHeader === 'string' ? originHeader : Array.isArray(originHeader) ? originHeader.join(', ') : undefined;
    if (origin !== undefined && origin !== '') {
      if ((this.protection || unsafe) && !this.isAllowedOrigin(origin, target)) return forbidden(`Origin ${show(origin)} is not allowed (HTTP_CORS_ORIGINS)`);
      return undefined;
    }
    if (unsafe) {
      const site = request.headers['sec-fetch-site'];
      if (site === 'cross-site' || site === 'same-site') {
        return forbidden(`a ${site} browser request (Sec-Fetch-Site) may ${request.method} here only with an allowed Origin header (HTTP_CORS_ORIGINS)`);
      }
    }
    return undefined;
  }

  /**
   * `/mcp`'s view of the same rules, for the edge's own check: why `host`/`origin` are refused,
   * or undefined. With protection off, nothing is refused here (unsafe cross-site requests were
   * already refused by the hook).
   */
  problem(host: string | undefined, origin: string | undefined): string | undefined {
    if (!this.protection) return undefined;
    if (host !== undefined && host === this.fineHost && origin === this.fineOrigin) return undefined;
    const parsed = host ? this.parsedHost(host) : undefined;
    if (!parsed || !this.allowedHosts.has(parsed.hostname)) return `Forbidden: Host ${show(host ?? '')} is not allowed (HTTP_ALLOWED_HOSTS)`;
    if (origin !== undefined && origin !== '' && !this.isAllowedOrigin(origin, host)) return `Forbidden: Origin ${show(origin)} is not allowed (HTTP_CORS_ORIGINS)`;
    this.fineHost = host;
    this.fineOrigin = origin;
    return undefined;
  }
}

function badRequest(why: string): HostOriginRefusal {
  return { status: 400, code: ErrorCode.BadRequest, message: `Bad request: ${why}` };
}

function forbidden(why: string): HostOriginRefusal {
  return { status: 403, code: ErrorCode.Forbidden, message: `Forbidden: ${why}` };
}

/** Whether a request target is the MCP endpoint (`/mcp`, `/mcp/<server>`), whose errors are JSON-RPC. */
export const isMcpPath = (url: string): boolean => url === '/mcp' || url.startsWith('/mcp/') || url.startsWith('/mcp?');

/**
 * Applies {@link HostOriginRules} to a request before routing, authentication or body parsing:
 * when it is refused, sends the refusal and returns true (the caller's `onRequest` hook then
 * stops); otherwise returns false and touches nothing. Refusals use the documented envelopes:
 * `{ "error": { "code", "message", "requestId" } }`, or on `/mcp` a JSON-RPC error (`-32000`,
 * `data.code`) — with the same HTTP status either way and the `X-Request-Id` header.
 */
export function refusedByHostOrigin(rules: HostOriginRules, request: FastifyRequest, reply: FastifyReply): boolean {
  const refusal = rules.check(request.raw as unknown as RequestHead);
  if (!refusal) return false;
  const body = isMcpPath(request.url)
    ? { jsonrpc: '2.0', error: { code: refusal.status === 400 ? -32600 : -32000, message: refusal.message, data: { code: refusal.code } }, id: null }
    : { error: { code: refusal.code, message: refusal.message, requestId: request.id } };
  void reply.status(refusal.status).header(REQUEST_ID_HEADER, request.id).header('content-type', 'application/json; charset=utf-8').send(body);
  return true;
}

/** {@link refusedByHostOrigin} as a Fastify `onRequest` hook of its own. */
export function hostOriginHook(rules: HostOriginRules) {
  return (request: FastifyRequest, reply: FastifyReply, done: () => void): void => {
    if (!refusedByHostOrigin(rules, request, reply)) done();
  };
}
