/**
 * Redaction for everything that is logged. Header names and any field whose name looks like
 * it holds a credential are replaced, however deep, so a secret passed by mistake into a
 * log call still never reaches the log.
 */
export const REDACTED = '[REDACTED]';

const SENSITIVE_KEY =
  /(secret|token|passw(or)?d|passphrase|pwd|authorization|cookie|credential|api[-_]?key|private[-_]?key|^key$|[-_]key$|^x-api-key$|session[-_]?id$)/i;

/** Key names already classified; log records reuse a small set of keys, so the regex runs once per name. */
const keyVerdicts = new Map<string, boolean>();
const MAX_REMEMBERED_KEYS = 10_000;

export const isSensitiveKey = (key: string): boolean => {
  let verdict = keyVerdicts.get(key);
  if (verdict === undefined) {
    verdict = SENSITIVE_KEY.test(key);
    if (keyVerdicts.size >= MAX_REMEMBERED_KEYS) keyVerdicts.clear();
    keyVerdicts.set(key, verdict);
  }
  return verdict;
};

/** Query parameters whose values are credentials beyond the key-name heuristic (`?sig=…`, `?auth=…`, `?code=…`). */
const CREDENTIAL_PARAM = /^(auth|sig|signature|code|jwt|access[-_]?token|id[-_]?token|client[-_]?secret|x-amz-(signature|credential|security-token))$/i;

/** Whether a query parameter, flag (without dashes) or `NAME=` prefix names a credential: {@link isSensitiveKey} or a known credential parameter. */
export const isCredentialParam = (name: string): boolean => isSensitiveKey(name) || CREDENTIAL_PARAM.test(name);

const MAX_DEPTH = 8;

/**
 * `value` with every field whose name {@link isSensitiveKey} replaced by `[REDACTED]`, however
 * deep (up to 8 levels; deeper values become `[Truncated]`). Errors become
 * `{ type, message, stack, ...fields }`, other class instances plain objects of their own
 * fields. Plain objects and arrays with nothing to change are returned as they are (no copy):
 * this runs on every log record.
 */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[Truncated]';
  if (value instanceof Error) {
    return { type: value.name, message: value.message, stack: value.stack, ...(redactDeep({ ...value }, depth + 1) as object) };
  }
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v: unknown = value[i];
      const r = redactDeep(v, depth + 1);
      if (r !== v && !out) out = value.slice(0, i);
      out?.push(r);
    }
    return out ?? value;
  }
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  const proto: unknown = Object.getPrototypeOf(value);
  const plain = proto === Object.prototype || proto === null;
  let out: Record<string, unknown> | undefined = plain ? undefined : {};
  for (const k in value) {
    if (!Object.prototype.hasOwnProperty.call(value, k)) continue;
    const v = (value as Record<string, unknown>)[k];
    const r = isSensitiveKey(k) ? REDACTED : redactDeep(v, depth + 1);
    if (r !== v && !out) {
      out = {};
      // Copy the fields before this one, which were unchanged.
      for (const before in value) {
        if (before === k) break;
        if (Object.prototype.hasOwnProperty.call(value, before)) out[before] = (value as Record<string, unknown>)[before];
      }
    }
    if (out) out[k] = r;
  }
  return out ?? value;
}

/** Masks the values of sensitive query parameters (`?token=…`) in a logged URL. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  let changed = false;
  for (const key of [...params.keys()]) {
    if (isCredentialParam(key) || /^state$/i.test(key)) {
      params.set(key, REDACTED);
      changed = true;
    }
  }
  return changed ? `${url.slice(0, q)}?${params.toString()}` : url;
}
