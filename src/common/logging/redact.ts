/**
 * Redaction for everything that is logged. Header names and any field whose name looks like
 * it holds a credential are replaced, however deep, so a secret passed by mistake into a
 * log call still never reaches the log.
 */
export const REDACTED = '[REDACTED]';

const SENSITIVE_KEY =
  /(secret|token|passw(or)?d|passphrase|pwd|authorization|cookie|credential|api[-_]?key|private[-_]?key|^key$|[-_]key$|^x-api-key$|session[-_]?id$)/i;

export const isSensitiveKey = (key: string): boolean => SENSITIVE_KEY.test(key);

/** Query parameters whose values are credentials beyond the key-name heuristic (`?sig=…`, `?auth=…`, `?code=…`). */
const CREDENTIAL_PARAM = /^(auth|sig|signature|code|jwt|access[-_]?token|id[-_]?token|client[-_]?secret|x-amz-(signature|credential|security-token))$/i;

/** Whether a query parameter, flag (without dashes) or `NAME=` prefix names a credential: {@link isSensitiveKey} or a known credential parameter. */
export const isCredentialParam = (name: string): boolean => isSensitiveKey(name) || CREDENTIAL_PARAM.test(name);

const MAX_DEPTH = 8;

export function redactDeep(value: unknown, depth = 0): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return '[Truncated]';
  if (value instanceof Error) {
    return { type: value.name, message: value.message, stack: value.stack, ...(redactDeep({ ...value }, depth + 1) as object) };
  }
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, depth + 1));
  if (value instanceof Date || Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = isSensitiveKey(k) ? REDACTED : redactDeep(v, depth + 1);
  return out;
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
