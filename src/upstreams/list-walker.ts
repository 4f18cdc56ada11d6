import { DescribedError } from './error-description.js';

/** Bounds on one upstream list walk (`tools/list`, `prompts/list`, …), over all its pages. */
export interface UpstreamListLimits {
  /** Most items one list may hold in total (GATEHOUSE_UPSTREAM_LIST_MAX_ITEMS). */
  maxItems: number;
  /** Most bytes (UTF-8 JSON of the items) one list may hold in total (GATEHOUSE_UPSTREAM_LIST_MAX_BYTES). */
  maxBytes: number;
}

export const DEFAULT_UPSTREAM_LIST_LIMITS: UpstreamListLimits = { maxItems: 10_000, maxBytes: 32 * 1024 * 1024 };

/** One page as the upstream answered it. */
export interface ListPage<T> {
  items: T[];
  nextCursor?: string;
}

/**
 * A list an upstream offers is larger than Gatehouse takes, or its pagination does not end: the
 * connection fails with this as `status.lastError` (naming the list, the limit and its setting)
 * rather than serving a silently truncated catalog.
 */
export class UpstreamListTooLargeError extends DescribedError {}

/**
 * Walks every page of an upstream list (MCP spec, server/utilities/pagination: follow
 * `nextCursor` until absent; cursors are opaque). Replaces the SDK client's own walk, which
 * gives up after 64 pages (`listMaxPages`) and so dropped large servers whole: here the walk is
 * bounded by what it costs — total items and total bytes — and a cursor the server hands out
 * twice (a walk that would never end) stops it. `fetchPage(undefined)` asks for the first page.
 *
 * @throws UpstreamListTooLargeError past `limits` or on a repeated cursor; whatever `fetchPage` throws.
 */
export async function walkPages<T>(method: string, fetchPage: (cursor: string | undefined) => Promise<ListPage<T>>, limits: UpstreamListLimits): Promise<T[]> {
  const all: T[] = [];
  const seen = new Set<string>();
  let bytes = 0;
  let cursor: string | undefined;
  for (;;) {
    const page = await fetchPage(cursor);
    all.push(...page.items);
    if (all.length > limits.maxItems) {
      throw new UpstreamListTooLargeError(`${method} lists more than ${limits.maxItems} items (GATEHOUSE_UPSTREAM_LIST_MAX_ITEMS)`);
    }
    bytes += Buffer.byteLength(JSON.stringify(page.items));
    if (bytes > limits.maxBytes) {
      throw new UpstreamListTooLargeError(`${method} lists more than ${limits.maxBytes} bytes (GATEHOUSE_UPSTREAM_LIST_MAX_BYTES)`);
    }
    const next = page.nextCursor;
    if (next === undefined) return all;
    if (seen.has(next)) throw new UpstreamListTooLargeError(`${method}: the server handed out the same cursor twice; its pagination does not end`);
    seen.add(next);
    cursor = next;
  }
}
