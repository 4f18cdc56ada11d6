import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_LOG_LINE, ServerLog } from './server-log.js';

describe('ServerLog', () => {
  it('keeps the newest lines up to its capacity, newest last; cuts long lines; skips blank ones', () => {
    let now = 0;
    const log = new ServerLog(() => now++, 3);
    for (const text of ['a', 'b', ' ', 'c', 'd', 'x'.repeat(MAX_LOG_LINE + 5)]) log.add('stderr', 'info', text);
    const texts = log.recent().map((e) => e.text);
    assert.deepEqual(texts.slice(0, 2), ['c', 'd']);
    assert.equal(texts[2], `${'x'.repeat(MAX_LOG_LINE)}…`);
    assert.deepEqual(log.recent(1).map((e) => e.text.length), [MAX_LOG_LINE + 1]);
    assert.deepEqual(log.recent(2).map((e) => e.at), [new Date(3).toISOString(), new Date(4).toISOString()]);
  });
});
