import { ProtocolError, ProtocolErrorCode } from '@modelcontextprotocol/server';

/** Default entries per page of Gatehouse's own lists (MCP_LIST_PAGE_SIZE). */
export const DEFAULT_LIST_PAGE_SIZE = 500;

/** The list methods Gatehouse paginates, and the key that orders each one's entries. */
const KEYS = {
  'tools/list': 'name',
  'prompts/list': 'name',
  'resources/list': 'uri',
  'resources/templates/list': 'uriTemplate',
} as const;
export type PaginatedKind = keyof typeof KEYS;

/** Cursor texts longer than this are not ours (names are at most 128 characters, URIs are bounded by the request size). */
const MAX_CURSOR_LENGTH = 16_384;

const sortedCopies = new WeakMap<readonly unknown[], readonly Record<string, unknown>[]>();

/** `items` ordered by their key (code-unit order), computed once per list. */
function sorted(kind: PaginatedKind, items: readonly Record<string, unknown>[]): readonly Record<string, unknown>[] {
  let copy = sortedCopies.get(items);
  if (!copy) {
    const key = KEYS[kind];
    copy = [...items].sort((a, b) => (String(a[key]) < String(b[key]) ? -1 : String(a[key]) > String(b[key]) ? 1 : 0));
    sortedCopies.set(items, copy);
  }
  return copy;
}

/** The opaque cursor for "the entries of `kind` after `key`": base64url of `[kind, key]`. */
export function encodeCursor(kind: PaginatedKind, key: string): string {
  return Buffer.from(JSON.stringify([kind, key])).toString('base64url');
}

/** The key a cursor of `kind` continues after; -32602 naming `cursor` for anything Gatehouse did not issue for this list. */
export function decodeCursor(kind: PaginatedKind, cursor: unknown): string {
  const invalid = () =>
    new ProtocolError(ProtocolErrorCode.InvalidParams, `Invalid params: cursor is not a cursor this server issued for ${kind} (pass the nextCursor of the previous page, or none)`);
  if (typeof cursor !== 'string' || cursor.length === 0 || cursor.length > MAX_CURSOR_LENGTH || !/^[A-Za-z0-9_-]+$/.test(cursor)) throw invalid();
  let decoded: unknown;
  try {
    decoded = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (!Array.isArray(decoded) || decoded.length !== 2 || decoded[0] !== kind || typeof decoded[1] !== 'string') throw invalid();
  return decoded[1];
}

/**
 * One page of a list Gatehouse serves (MCP spec, server/utilities/pagination). Without a cursor
 * and with at most `pageSize` entries, the list is returned as it is (no `nextCursor`; the common
 * case, and the fast path's preserialized tools list stays usable). Otherwise entries are
 * ordered by their key (tool/prompt `name`, resource `uri`, template `uriTemplate`) and a page is
 * the next `pageSize` entries after the cursor's key: stable across replicas and restarts, and
 * a change between two pages neither repeats nor skips an entry that stayed. `nextCursor` is
 * set while entries remain.
 *
 * @returns the page's entries, `undefined` `nextCursor` on the last page; `whole` when `items` was returned unchanged.
 * @throws ProtocolError -32602 for a cursor Gatehouse did not issue for this list ({@link decodeCursor}).
 */
export function paginate<T extends object>(
  kind: PaginatedKind,
  items: readonly T[],
  cursor: unknown,
  pageSize: number,
): { items: readonly T[]; nextCursor?: string; whole: boolean } {
  if (cursor === undefined && items.length <= pageSize) return { items, whole: true };
  const all = sorted(kind, items as readonly Record<string, unknown>[]) as unknown as readonly T[];
  const field = KEYS[kind];
  const keyOf = (item: T) => String((item as Record<string, unknown>)[field]);
  let start = 0;
  if (cursor !== undefined) {
    const after = decodeCursor(kind, cursor);
    // First entry whose key sorts after the cursor's (binary search).
    let lo = 0;
    let hi = all.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keyOf(all[mid]) <= after) lo = mid + 1;
      else hi = mid;
    }
    start = lo;
  }
  const page = all.slice(start, start + pageSize);
  const more = start + pageSize < all.length;
  return { items: page, whole: false, ...(more && page.length > 0 ? { nextCursor: encodeCursor(kind, keyOf(page[page.length - 1])) } : {}) };
}
