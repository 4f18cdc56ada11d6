import { isSensitiveKey, REDACTED } from '../common/logging/redact.js';
import { blank, hasPlaceholders } from '../secrets/placeholders.js';
import type { UpstreamStatus } from './upstream-connection.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';

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

/** The admin API's view of `row` with `status`. */
export function toView(row: UpstreamServerEntity, status: UpstreamStatus): UpstreamServerView {
  return {
    id: row.id,
    name: row.name,
    transport: row.transport,
    command: row.command,
    args: row.args,
    env: mask(row.env),
    cwd: row.cwd,
    url: row.url,
    headers: mask(row.headers),
    enabled: row.enabled,
    description: row.description,
    timeoutMs: row.timeoutMs,
    toolFilter: { allow: row.toolFilter.allow ?? [], deny: row.toolFilter.deny ?? [] },
    inject: mask(row.inject),
    source: row.source,
    createdAt: row.createdAt.toISOString(),
    updatedAt: row.updatedAt.toISOString(),
    status,
  };
}
