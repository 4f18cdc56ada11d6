import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PRESERIALIZED } from './mcp-operation-pipeline.js';
import { canWrapLikeSdk, needsLegacyToolWrap, normalizeToolResult, releaseAnswer, responseAnswer, toModernResult } from './era.js';
import { toRpcError } from './mcp-operation-pipeline.js';

const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';

/** {@link responseAnswer} as text (bytes decoded). */
const responseJson = (...args: Parameters<typeof responseAnswer>): string => {
  const answer = responseAnswer(...args);
  return typeof answer === 'string' ? answer : answer.toString('utf8');
};

describe('era encoding of fast-path results (mirrors the SDK codecs)', () => {
  it('modern: resultType, cache fields on lists, serverInfo stamped, 2025-only execution dropped from tools', () => {
    const tools = [{ name: 'a', inputSchema: { type: 'object' }, execution: { taskSupport: 'forbidden' } }, { name: 'b', inputSchema: { type: 'object' } }];
    const list = { tools, [PRESERIALIZED]: { field: 'tools', json: JSON.stringify(tools) } };
    const encoded = (JSON.parse(responseJson('modern', 'tools/list', 1, list)) as { result: Record<string, unknown> }).result;
    assert.deepEqual(encoded, {
      tools: [{ name: 'a', inputSchema: { type: 'object' } }, { name: 'b', inputSchema: { type: 'object' } }],
      resultType: 'complete',
      ttlMs: 30_000,
      cacheScope: 'private',
      _meta: { [SERVER_INFO]: { name: 'gatehouse', title: 'Gatehouse MCP gateway', version: '0.1.0' } },
    });
    const call = toModernResult('tools/call', { content: [], _meta: { other: 1 } });
    assert.equal(call.resultType, 'complete');
    assert.equal('ttlMs' in call, false, 'tools/call is not cacheable');
    assert.deepEqual(Object.keys(call._meta as object), ['other', SERVER_INFO], 'other _meta kept');
    assert.equal(toModernResult('tools/call', { content: [], resultType: 'input_required' }).resultType, 'input_required', 'tools/call may carry another resultType');
    assert.throws(() => toModernResult('tools/list', { tools: [], resultType: 'input_required' }));
  });

  it('modern: one copy of the result, never changed in place, with the keys in the order a copy per change gives', () => {
    const result = { content: [{ type: 'text', text: 'hi' }], isError: false };
    const encoded = toModernResult('tools/call', result);
    assert.notEqual(encoded, result);
    assert.deepEqual(result, { content: [{ type: 'text', text: 'hi' }], isError: false }, 'the input is untouched');
    assert.deepEqual(Object.keys(encoded), ['content', 'isError', 'resultType', '_meta']);
    const list = toModernResult('resources/list', { resources: [], _meta: { other: 1 }, ttlMs: 5 });
    assert.deepEqual(Object.keys(list), ['resources', '_meta', 'ttlMs', 'resultType', 'cacheScope']);
    assert.equal(list.ttlMs, 5);
    const stamped = { content: [], resultType: 'complete', _meta: { [SERVER_INFO]: { name: 'up' } } };
    assert.equal(toModernResult('tools/call', stamped), stamped, 'nothing to change: the result itself');
  });

  it('legacy: results unchanged; a preserialized field is spliced in verbatim', () => {
    const result = { tools: [{ name: 'x' }], nextCursor: 'c', [PRESERIALIZED]: { field: 'tools', json: '[{"name":"x"}]' } };
    assert.equal(responseJson('legacy', 'tools/list', 3, result), '{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"x"}],"nextCursor":"c"}}');
    assert.equal(responseJson('legacy', 'tools/list', 1, { tools: [], [PRESERIALIZED]: { field: 'tools', json: '[]' } }), '{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}');
  });

  it('flags tools the SDK rewrites for 2025-era clients (non-object outputSchema root)', () => {
    assert.equal(needsLegacyToolWrap({ name: 'a', outputSchema: { type: 'array' } }), true);
    assert.equal(needsLegacyToolWrap({ name: 'a', outputSchema: { type: 'object' } }), false);
    assert.equal(needsLegacyToolWrap({ name: 'a' }), false);
    const tool = { name: 'a', outputSchema: { $schema: 'https://json-schema.org/draft/2020-12/schema', type: 'array', items: { type: 'string' } } };
    const wrapped = JSON.parse(responseJson('legacy', 'tools/list', 1, { tools: [tool], [PRESERIALIZED]: { field: 'tools', json: JSON.stringify([tool]) } })) as { result: { tools: unknown[] } };
    assert.deepEqual(wrapped.result.tools, [{ name: 'a', outputSchema: { $schema: tool.outputSchema.$schema, type: 'object', properties: { result: tool.outputSchema }, required: ['result'] } }]);
    assert.equal(canWrapLikeSdk(tool), true);
    assert.equal(canWrapLikeSdk({ name: 'b', outputSchema: { type: 'array', items: { $ref: '#/$defs/x' } } }), false, 'references are the SDK’s to rewrite');
  });

  it('tool results: content [] added when missing; non-object structuredContent refused for 2025-era clients only', () => {
    assert.deepEqual(normalizeToolResult({ structuredContent: { a: 1 } }), { structuredContent: { a: 1 }, content: [] });
    assert.deepEqual(normalizeToolResult({ task: {} }), { task: {} }, 'other result families untouched');
    const arrayResult = { content: [{ type: 'text', text: 'a' }], structuredContent: ['a'] };
    assert.throws(
      () => responseJson('legacy', 'tools/call', 1, arrayResult),
      (e: unknown) => (e as { code?: number }).code === -32602 && /^Invalid tools\/call result: .*expected record, received array/s.test((e as Error).message),
    );
    assert.match(responseJson('modern', 'tools/call', 1, arrayResult), /"structuredContent":\["a"\]/);
  });

  it('errors become JSON-RPC errors by the SDK’s rule', () => {
    assert.deepEqual(toRpcError(Object.assign(new Error('gone'), { code: -32002, data: { uri: 'x' } })), { code: -32602, message: 'gone', data: { uri: 'x' } });
    assert.deepEqual(toRpcError(new Error('boom')), { code: -32603, message: 'boom' });
    assert.deepEqual(toRpcError('weird'), { code: -32603, message: 'Internal error' });
  });

  describe('a whole list answered from cached bytes (responseAnswer)', () => {
    const tool = (name: string, extra: Record<string, unknown> = {}) => ({ name, description: `é ${name} ✓`, inputSchema: { type: 'object' }, ...extra });
    const list = (tools: unknown[], rest: Record<string, unknown> = {}) => ({ tools, ...rest, [PRESERIALIZED]: Object.freeze({ field: 'tools', json: JSON.stringify(tools) }) });
    /** The answer as the string-built encoding spells it (what the fast path sent before bytes). */
    const expected = (id: string | number, result: Record<string, unknown>) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${JSON.stringify(result)}}`;
    const text = (answer: string | Buffer) => {
      assert.ok(Buffer.isBuffer(answer), 'a preserialized list is answered as bytes');
      return answer.toString('utf8');
    };

    it('is the same UTF-8 text for every id (non-ASCII ids and tools included), the cached end reused', () => {
      const tools = [tool('a'), tool('b')];
      const result = list(tools);
      for (const id of [1, 'x', 'ü-✓-😀', 9007199254740991, '"quoted"\\']) {
        const answer = responseAnswer('legacy', 'tools/list', id, result);
        assert.equal(text(answer), expected(id, { tools }));
        assert.equal((answer as Buffer).length, Buffer.byteLength(expected(id, { tools })));
      }
      assert.equal(responseJson('legacy', 'tools/list', 7, result), expected(7, { tools }), 'the same answer as text');
    });

    it('follows a catalog or policy change (another tools array, another preserialized value) and the result’s other fields', () => {
      const before = list([tool('a')]);
      assert.equal(text(responseAnswer('legacy', 'tools/list', 1, before)), expected(1, { tools: [tool('a')] }));
      const after = list([tool('a'), tool('c')]);
      assert.equal(text(responseAnswer('legacy', 'tools/list', 1, after)), expected(1, { tools: [tool('a'), tool('c')] }), 'a new list: its own bytes');
      const pre = before[PRESERIALIZED];
      const paged = { tools: before.tools, nextCursor: 'abc', [PRESERIALIZED]: pre };
      assert.equal(text(responseAnswer('legacy', 'tools/list', 1, paged)), expected(1, { tools: [tool('a')], nextCursor: 'abc' }), 'same preserialized value, other fields: not the cached end');
      assert.equal(text(responseAnswer('legacy', 'tools/list', 2, before)), expected(2, { tools: [tool('a')] }), 'and back');
    });

    it('per era: the same tools array encoded for 2025 (schemas wrapped) and 2026-07-28 (execution dropped, cache fields) without mixing them up', () => {
      const tools = [tool('w', { outputSchema: { type: 'array' }, execution: { taskSupport: 'forbidden' } })];
      const result = list(tools);
      const legacy = JSON.parse(text(responseAnswer('legacy', 'tools/list', 1, result))) as { result: { tools: { outputSchema: unknown; execution?: unknown }[] } };
      assert.deepEqual(legacy.result.tools[0].outputSchema, { type: 'object', properties: { result: { type: 'array' } }, required: ['result'] });
      assert.deepEqual(legacy.result.tools[0].execution, { taskSupport: 'forbidden' });
      const modern = JSON.parse(text(responseAnswer('modern', 'tools/list', 1, result))) as { result: Record<string, unknown> & { tools: { outputSchema: unknown; execution?: unknown }[] } };
      assert.deepEqual(modern.result.tools[0].outputSchema, { type: 'array' });
      assert.equal(modern.result.tools[0].execution, undefined);
      assert.equal(modern.result.resultType, 'complete');
      assert.equal(text(responseAnswer('legacy', 'tools/list', 1, result)), JSON.stringify(legacy), 'legacy again: still its own');
      assert.equal(text(responseAnswer('modern', 'tools/list', 1, result)), JSON.stringify(modern));
    });

    it('reuses an answer’s bytes only once released: an answer still held is never overwritten; ids of any length', () => {
      const tools = [tool('r')];
      const result = list(tools);
      /** Whether two answers are in one block (blocks end where their answers end). */
      const sameBlock = (a: Buffer, b: Buffer) => a.buffer === b.buffer && a.byteOffset + a.length === b.byteOffset + b.length;
      const first = responseAnswer('legacy', 'tools/list', 1, result) as Buffer;
      const second = responseAnswer('legacy', 'tools/list', 'a-longer-id', result) as Buffer;
      assert.ok(!sameBlock(first, second), 'not released: a block of its own');
      assert.equal(first.toString('utf8'), expected(1, { tools }), 'the first answer intact');
      releaseAnswer(first);
      const third = responseAnswer('legacy', 'tools/list', 'ü-✓', result) as Buffer;
      assert.ok(sameBlock(third, first), 'released: its block reused');
      assert.equal(third.toString('utf8'), expected('ü-✓', { tools }));
      releaseAnswer(third);
      releaseAnswer(third);
      const fourth = responseAnswer('legacy', 'tools/list', 2, result) as Buffer;
      const fifth = responseAnswer('legacy', 'tools/list', 3, result) as Buffer;
      assert.ok(!sameBlock(fourth, fifth), 'released twice: still lent once');
      assert.equal(fourth.toString('utf8'), expected(2, { tools }));
      assert.equal(fifth.toString('utf8'), expected(3, { tools }));
      const long = 'x'.repeat(500);
      assert.equal(text(responseAnswer('legacy', 'tools/list', long, result)), expected(long, { tools }), 'a head longer than the room: a buffer of its own');
      releaseAnswer(fourth);
      const other = { tools, nextCursor: 'n', [PRESERIALIZED]: result[PRESERIALIZED] };
      assert.equal(text(responseAnswer('legacy', 'tools/list', 4, other)), expected(4, { tools, nextCursor: 'n' }), 'other fields: not a spare of the old end');
    });

    it('anything without a preserialized field stays text', () => {
      assert.equal(responseAnswer('legacy', 'tools/call', 1, { content: [] }), '{"jsonrpc":"2.0","id":1,"result":{"content":[]}}');
    });
  });
});
