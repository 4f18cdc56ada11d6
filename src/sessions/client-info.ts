import { toPgSafe } from '../common/validation/pg-safe.js';

/**
 * What a legacy session row keeps of a client's `initialize` (MCP 2025-11-25,
 * basic/lifecycle): informational only — nothing in Gatehouse decides anything on it — so it
 * is cleaned and bounded rather than refused:
 *
 * - `clientInfo` (the spec's `Implementation`): only `name`, `version`, `title`, `description`
 *   and `websiteUrl`, each a string cut to {@link MAX_FIELD_CHARS} characters (icons and
 *   unknown fields are dropped);
 * - `capabilities`: only the spec's top-level keys (`roots`, `sampling`, `elicitation`,
 *   `tasks`, `experimental`, `extensions`), each an object kept to {@link MAX_DEPTH} levels and
 *   {@link MAX_KEYS} keys per level, strings cut to {@link MAX_FIELD_CHARS}; if the result still
 *   serializes to more than {@link MAX_CAPABILITIES_BYTES}, each key keeps `{}` only;
 * - `protocolVersion`: cut to 64 characters.
 *
 * In every kept string (and key), NUL and unpaired surrogates — which PostgreSQL's `text` and
 * `jsonb` refuse — become U+FFFD.
 */
export const MAX_FIELD_CHARS = 256;
const MAX_DESCRIPTION_CHARS = 1024;
const MAX_DEPTH = 3;
const MAX_KEYS = 32;
/** Largest stored capabilities object, in bytes of JSON. */
export const MAX_CAPABILITIES_BYTES = 4096;
const CLIENT_INFO_FIELDS = ['name', 'version', 'title', 'description', 'websiteUrl'] as const;
const CAPABILITY_KEYS = ['roots', 'sampling', 'elicitation', 'tasks', 'experimental', 'extensions'] as const;

const isRecord = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const cut = (s: string, max: number) => toPgSafe(s.length > max ? s.slice(0, max) : s);

/** The `clientInfo` to store (see the module comment); `{}` for anything that is not an object. */
export function storedClientInfo(clientInfo: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(clientInfo)) return out;
  for (const field of CLIENT_INFO_FIELDS) {
    const value = clientInfo[field];
    if (typeof value === 'string') out[field] = cut(value, field === 'description' ? MAX_DESCRIPTION_CHARS : MAX_FIELD_CHARS);
  }
  return out;
}

/** The `capabilities` to store (see the module comment); `{}` for anything that is not an object. */
export function storedCapabilities(capabilities: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!isRecord(capabilities)) return out;
  for (const key of CAPABILITY_KEYS) {
    if (isRecord(capabilities[key])) out[key] = bounded(capabilities[key], 1);
  }
  if (Buffer.byteLength(JSON.stringify(out), 'utf8') <= MAX_CAPABILITIES_BYTES) return out;
  return Object.fromEntries(Object.keys(out).map((key) => [key, {}]));
}

/** The protocol version to store: a string of at most 64 characters. */
export function storedProtocolVersion(version: unknown): string {
  return typeof version === 'string' ? cut(version, 64) : '';
}

/** A JSON value kept to MAX_DEPTH levels (deeper containers become `{}`/`[]`) and MAX_KEYS entries per level. */
function bounded(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return cut(value, MAX_FIELD_CHARS);
  if (typeof value === 'number') return Number.isFinite(value) ? value : null;
  if (typeof value === 'boolean' || value === null) return value;
  if (Array.isArray(value)) return depth >= MAX_DEPTH ? [] : value.slice(0, MAX_KEYS).map((v) => bounded(v, depth + 1));
  if (!isRecord(value)) return null;
  const out: Record<string, unknown> = {};
  if (depth >= MAX_DEPTH) return out;
  let n = 0;
  for (const key in value) {
    if (!Object.hasOwn(value, key) || key === '__proto__') continue;
    if (n++ >= MAX_KEYS) break;
    out[cut(key, MAX_FIELD_CHARS)] = bounded(value[key], depth + 1);
  }
  return out;
}
