import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/server';
import { decodeCursor, encodeCursor, paginate } from './pagination.js';

const tools = ['c', 'a', 'e', 'b', 'd'].map((name) => ({ name }));

describe('paginate', () => {
  it('returns a short list whole, in its own order, without a cursor', () => {
    const page = paginate('tools/list', tools, undefined, 5);
    assert.equal(page.whole, true);
    assert.equal(page.items, tools);
    assert.equal(page.nextCursor, undefined);
  });

  it('pages a longer list by name, continuing after the cursor’s key even when the list changed', () => {
    const first = paginate('tools/list', tools, undefined, 2);
    assert.deepEqual(first.items.map((t) => t.name), ['a', 'b']);
    const changed = [...tools.filter((t) => t.name !== 'c'), { name: 'bb' }];
    const second = paginate('tools/list', changed, first.nextCursor, 2);
    assert.deepEqual(second.items.map((t) => t.name), ['bb', 'd']);
    const third = paginate('tools/list', changed, second.nextCursor, 2);
    assert.deepEqual(third.items.map((t) => t.name), ['e']);
    assert.equal(third.nextCursor, undefined);
  });

  it('refuses cursors it did not issue for that list with -32602', () => {
    for (const cursor of ['', 'x y', 'bm9wZQ', 42, encodeCursor('prompts/list', 'a'), 'a'.repeat(20_000)]) {
      assert.throws(() => decodeCursor('tools/list', cursor), (e: unknown) => e instanceof ProtocolError && e.code === -32602, String(cursor));
    }
    assert.equal(decodeCursor('resources/list', encodeCursor('resources/list', 'file:///x')), 'file:///x');
  });
});
