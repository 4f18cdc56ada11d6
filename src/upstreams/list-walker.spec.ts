import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpstreamListTooLargeError, walkPages } from './list-walker.js';

const pages = (n: number, per: number) => (cursor: string | undefined) => {
  const page = cursor === undefined ? 0 : Number(cursor);
  return Promise.resolve({ items: Array.from({ length: per }, (_, i) => page * per + i), ...(page + 1 < n ? { nextCursor: String(page + 1) } : {}) });
};

describe('walkPages', () => {
  it('follows nextCursor over any number of pages', async () => {
    const all = await walkPages('tools/list', pages(500, 2), { maxItems: 10_000, maxBytes: 1e6 });
    assert.equal(all.length, 1_000);
  });

  it('stops at the item and byte bounds, naming the setting', async () => {
    await assert.rejects(walkPages('tools/list', pages(10, 10), { maxItems: 50, maxBytes: 1e6 }), (e: unknown) => e instanceof UpstreamListTooLargeError && /more than 50 items \(GATEHOUSE_UPSTREAM_LIST_MAX_ITEMS\)/.test(e.message));
    await assert.rejects(walkPages('prompts/list', pages(10, 10), { maxItems: 1_000, maxBytes: 100 }), /prompts\/list lists more than 100 bytes \(GATEHOUSE_UPSTREAM_LIST_MAX_BYTES\)/);
  });

  it('stops a walk whose cursor repeats', async () => {
    await assert.rejects(walkPages('tools/list', () => Promise.resolve({ items: [], nextCursor: 'same' }), { maxItems: 10, maxBytes: 1e6 }), /same cursor twice/);
  });
});
