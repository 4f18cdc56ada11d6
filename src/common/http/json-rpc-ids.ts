import type { IncomingMessage } from 'node:http';

/**
 * JSON-RPC ids returned exactly as sent (JSON-RPC 2.0 §5: the response id "MUST be the same as
 * the value of the id member in the Request Object"). JSON.parse turns an integer id above 2^53
 * into a different double (9007199254740993 → …992) and `1e400` into Infinity (then refused with
 * id null), and two requests of one batch with the same id collide in the SDK's transport, which
 * pairs answers by id (the second answer was lost). So after parsing, such ids are replaced by
 * placeholder safe integers unique in the message, the replaced ids' raw text is kept for the
 * request, and the answer's `"id":<placeholder>` is written back as the raw text
 * ({@link restoreIds}). Ordinary ids (strings, safe integers, unique) are left alone and cost
 * nothing beyond a type check.
 *
 * Known limit: a `notifications/cancelled` naming such an id by `requestId` is matched against
 * the parsed value, so it may not find the request.
 */
const placeholders = new WeakMap<IncomingMessage, Map<string, string>>();

/** The highest placeholder; more are counted down from it. */
const FIRST_PLACEHOLDER = Number.MAX_SAFE_INTEGER;

const isWhitespace = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
const ENDS_NUMBER = new Set([0x2c, 0x7d, 0x5d, 0x20, 0x09, 0x0a, 0x0d]);

/**
 * The raw text of each numeric `id` member: of the top-level object (index 0), or of each
 * element object of a top-level array (by element index). One pass; strings (with escapes)
 * skipped. Non-numeric ids are not reported.
 */
export function rawNumericIds(text: string): (string | undefined)[] {
  const out: (string | undefined)[] = [];
  let depth = 0;
  let arrayTop = false;
  let element = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
      if (depth !== (arrayTop ? 2 : 1) || i - start !== 3 || text.slice(start, i + 1) !== '"id"') continue;
      let j = i + 1;
      while (isWhitespace(text.charCodeAt(j))) j++;
      if (text.charCodeAt(j) !== 0x3a) continue;
      j++;
      while (isWhitespace(text.charCodeAt(j))) j++;
      const first = text.charCodeAt(j);
      if (first !== 0x2d && (first < 0x30 || first > 0x39)) continue;
      let k = j;
      while (k < text.length && !ENDS_NUMBER.has(text.charCodeAt(k))) k++;
      out[arrayTop ? element : 0] = text.slice(j, k);
      i = k - 1;
    } else if (c === 0x7b || c === 0x5b) {
      if (depth === 0 && c === 0x5b) arrayTop = true;
      depth++;
      if (arrayTop && depth === 2 && c === 0x7b) element++;
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
    }
  }
  return out;
}

interface Message {
  id?: unknown;
}

/**
 * Replaces the ids of `body` (a parsed JSON-RPC message or batch) that would not come back as
 * sent — numbers that are not safe integers, and repeats of an earlier id in the batch — by
 * placeholders, remembering their raw text for `request` (read from `raw`, the body's bytes).
 * Mutates `body`. No-op for anything else.
 */
export function protectIds(request: IncomingMessage, body: unknown, raw: Buffer | string): void {
  // The common case, one message with an ordinary id: nothing to do, nothing allocated.
  if (!Array.isArray(body)) {
    const id = (body as Message | null)?.id;
    if (typeof id !== 'number' || Number.isSafeInteger(id)) return;
  }
  const messages = (Array.isArray(body) ? body : [body]).filter((m): m is Message => typeof m === 'object' && m !== null && 'id' in m);
  if (messages.length === 0) return;
  const needs = (m: Message, seen: Set<string>) =>
    (typeof m.id === 'number' && !Number.isSafeInteger(m.id)) || (messages.length > 1 && seen.has(JSON.stringify(m.id)));
  const seen = new Set<string>();
  let any = false;
  for (const m of messages) {
    if (needs(m, seen)) any = true;
    seen.add(JSON.stringify(m.id));
  }
  if (!any) return;
  const rawNumbers = rawNumericIds(typeof raw === 'string' ? raw : raw.toString('utf8'));
  const elements = Array.isArray(body) ? (body as unknown[]) : [body];
  const taken = new Set(messages.map((m) => m.id));
  const map = new Map<string, string>();
  let next = FIRST_PLACEHOLDER;
  const known = new Set<string>();
  elements.forEach((m, index) => {
    if (typeof m !== 'object' || m === null || !('id' in m)) return;
    const message = m as Message;
    if (!needs(message, known)) {
      known.add(JSON.stringify(message.id));
      return;
    }
    known.add(JSON.stringify(message.id));
    const text = typeof message.id === 'number' ? (rawNumbers[index] ?? JSON.stringify(message.id)) : JSON.stringify(message.id);
    while (taken.has(next)) next--;
    taken.add(next);
    map.set(String(next), text);
    message.id = next;
  });
  if (map.size > 0) placeholders.set(request, map);
}

/** The placeholders of `request` (placeholder text → raw id text), if {@link protectIds} replaced any. */
export function protectedIds(request: IncomingMessage): Map<string, string> | undefined {
  return placeholders.get(request);
}

/**
 * `text` (a JSON-RPC answer, JSON or SSE; as text or UTF-8 bytes) with each `"id":<placeholder>`
 * written back as the id the client sent. Without placeholders, `text` itself; with them, text
 * (bytes are decoded first: the rare case of a protected id).
 */
export function restoreIds(text: string, map: Map<string, string> | undefined): string;
export function restoreIds(text: string | Buffer, map: Map<string, string> | undefined): string | Buffer;
export function restoreIds(text: string | Buffer, map: Map<string, string> | undefined): string | Buffer {
  if (!map) return text;
  return (typeof text === 'string' ? text : text.toString('utf8')).replace(/"id":(\d{16})(?=[,}\s])/g, (whole, n: string) => {
    const raw = map.get(n);
    return raw === undefined ? whole : `"id":${raw}`;
  });
}
