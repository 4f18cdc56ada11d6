import { isCredentialParam, isSensitiveKey, REDACTED } from '../common/logging/redact.js';
import { blank, hasPlaceholders } from '../secrets/placeholders.js';
import type { UpstreamStatus } from './upstream-connection.js';
import type { UpstreamOAuthConfig, UpstreamServerEntity } from './upstream-server.entity.js';

/** A server as the admin API shows it: credential-like values masked, with this replica's status. */
export interface UpstreamServerView {
  id: string;
  name: string;
  transport: UpstreamServerEntity['transport'];
  command: string | null;
  args: string[];
  env: Record<string, string>;
  cwd: string | null;
  url: string | null;
  headers: Record<string, string>;
  enabled: boolean;
  description: string | null;
  timeoutMs: number;
  toolFilter: UpstreamServerEntity['toolFilter'];
  inject: Record<string, string>;
  redirectOrigins: string[];
  /** Per-server message size cap in bytes (null: GATEHOUSE_UPSTREAM_MAX_MESSAGE_SIZE and the HTTP caps). */
  maxMessageBytes: number | null;
  oauth: UpstreamOAuthConfig | null;
  source: UpstreamServerEntity['source'];
  createdAt: string;
  updatedAt: string;
  status: UpstreamStatus;
}

/**
 * Values under credential-like keys (`Authorization`, `GITHUB_TOKEN`…) are never shown back —
 * unless all they hold besides placeholders is a short literal (`Bearer ${secret:TOKEN}`),
 * which shows how the secret is used and reveals nothing.
 */
export function mask(map: Record<string, string>): Record<string, string> {
  const safe = (v: string) => hasPlaceholders([{ v }]) && blank({ v }).v.trim().length < 8;
  return Object.fromEntries(Object.entries(map).map(([k, v]) => [k, isSensitiveKey(k) && !safe(v) ? REDACTED : v]));
}

/** A PATCH may send a masked value back unchanged: keep what is stored for it. */
export function unmask(next: Record<string, string>, stored: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(next).map(([k, v]) => [k, v === REDACTED && k in stored ? stored[k] : v]));
}


/**
 * A URL with its credentials masked: the whole userinfo (`https://[REDACTED]@host/` — a
 * user name alone is often a token, as in `https://<token>@github.com`) and the values of
 * credential-like query parameters (`?api_key=[REDACTED]&page=2`). The rest is kept as
 * written; a string that is not a URL is returned unchanged.
 */
export function maskUrl(url: string): string {
  const scheme = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*)(.*)$/i.exec(url);
  if (!scheme) return url;
  const [, prefix, authority, rest] = scheme;
  const at = authority.lastIndexOf('@');
  const host = at >= 0 ? `${REDACTED}@${authority.slice(at + 1)}` : authority;
  const maskedRest = rest.replace(/([?&;])([^=&#;]*)=([^&#;]*)/g, (all, sep: string, name: string) => {
    let decoded = name;
    try {
      decoded = decodeURIComponent(name.replace(/\+/g, ' '));
    } catch {
      // keep it as written
    }
    return isCredentialParam(decoded) ? `${sep}${name}=${REDACTED}` : all;
  });
  return `${prefix}${host}${maskedRest}`;
}

/** `--token`, `--api-key`, `-password`, `--client-secret`, `--auth`…: a flag whose value is a credential. */
const isCredentialFlag = (arg: string) => /^--?[A-Za-z]/.test(arg) && isCredentialParam(arg.replace(/^--?/, ''));
/** `Authorization: Bearer …`, as passed to `--header`. */
const HEADER_ARG = /^([A-Za-z0-9-]+)(\s*:\s*)(.+)$/s;

/**
 * Command-line arguments with credentials masked: the value after a credential-like flag
 * (`--token VALUE`, unless it is itself a flag), `--token=VALUE` and `NAME=VALUE` with a
 * credential-like name (`-e GITHUB_TOKEN=…`), `Authorization: …`-style header arguments, and
 * URLs ({@link maskUrl}).
 */
export function maskArgs(args: readonly string[]): string[] {
  return args.map((arg, i) => {
    if (i > 0 && isCredentialFlag(args[i - 1]) && !args[i - 1].includes('=') && !/^--?[A-Za-z]/.test(arg)) return REDACTED;
    const eq = arg.indexOf('=');
    if (eq > 0 && isCredentialParam(arg.slice(0, eq).replace(/^--?/, ''))) return `${arg.slice(0, eq)}=${REDACTED}`;
    const header = HEADER_ARG.exec(arg);
    if (header && isCredentialParam(header[1])) return `${header[1]}${header[2]}${REDACTED}`;
    return maskUrl(arg);
  });
}

/** The credentials {@link maskArgs} hides in `args` (for masking them wherever else they might show up). */
export function credentialsInArgs(args: readonly string[]): string[] {
  const masked = maskArgs(args);
  const found: string[] = [];
  masked.forEach((m, i) => {
    const at = m.indexOf(REDACTED);
    // One masked span: the original holds the credential between the same prefix and suffix.
    if (at < 0 || m.indexOf(REDACTED, at + 1) >= 0) return;
    const suffix = m.length - at - REDACTED.length;
    const value = args[i].slice(at, args[i].length - suffix);
    if (value) found.push(value);
  });
  return found;
}

/** A PATCH may send the masked `url` back unchanged: keep the stored one. */
export function unmaskUrl(next: string | null | undefined, stored: string | null): string | null | undefined {
  return next != null && stored !== null && next.includes(REDACTED) && next === maskUrl(stored) ? stored : next;
}

/**
 * A PATCH may send masked `args` back: each argument equal to its masked stored counterpart
 * (the same position, or, for an array of another length, the same masked text with the same
 * preceding argument) gets the stored value back.
 */
export function unmaskArgs(next: readonly string[], stored: readonly string[]): string[] {
  const masked = maskArgs(stored);
  return next.map((arg, i) => {
    if (!arg.includes(REDACTED)) return arg;
    if (masked[i] === arg) return stored[i];
    const j = masked.findIndex((m, k) => m === arg && (k === 0 ? i === 0 : masked[k - 1] === next[i - 1]));
    return j >= 0 ? stored[j] : arg;
  });
}

/**
 * `oauth` as the admin API shows it: a literal `clientSecret` is masked; a `${secret:NAME}`
 * placeholder is shown (it names where the value is, not the value).
 */
export function maskOAuth(oauth: UpstreamOAuthConfig | null): UpstreamOAuthConfig | null {
  if (!oauth?.clientSecret) return oauth;
  return { ...oauth, clientSecret: /^\$\{secret:[^}]+\}$/.test(oauth.clientSecret) ? oauth.clientSecret : REDACTED };
}

/** A PATCH may send the masked `oauth.clientSecret` back: keep the stored one. */
export function unmaskOAuth(next: UpstreamOAuthConfig | null, stored: UpstreamOAuthConfig | null): UpstreamOAuthConfig | null {
  if (!next || next.clientSecret !== REDACTED) return next;
  return { ...next, clientSecret: stored?.clientSecret };
}

/** The admin API's view of `row` with `status`. */
export function toView(row: UpstreamServerEntity, status: UpstreamStatus): UpstreamServerView {
  return {
    id: row.id,
    name: row.name,
    transport: row.transport,
    command: row.command,
    args: maskArgs(row.args),
    env: mask(row.env),
    cwd: row.cwd,
    url: row.url === null ? null : maskUrl(row.url),
    headers: mask(row.headers),
    enabled: row.enabled,
    description: row.description,
    timeoutMs: row.timeoutMs,
    toolFilter: { allow: row.toolFilter.allow ?? [], deny: row.toolFilter.deny ?? [] },
    inject: mask(row.inject),
    redirectOrigins: row.redirectOrigins ?? [],
    maxMessageBytes: row.maxMessageBytes ?? null,
    oauth: maskOAuth(row.oauth ?? null),
    source: row.source,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    status,
  };
}
