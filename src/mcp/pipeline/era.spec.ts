import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PRESERIALIZED } from './mcp-operation-pipeline.js';
import { canWrapLikeSdk, needsLegacyToolWrap, normalizeToolResult, responseJson, resultJson, toModernResult } from './era.js';
import { toRpcError } from './mcp-operation-pipeline.js';

const SERVER_INFO = 'io.modelcontextprotocol/serverInfo';

describe('era encoding of fast-path results (mirrors the SDK codecs)', () => {
  it('modern: resultType, cache fields on lists, serverInfo stamped, 2025-only execution dropped from tools', () => {
    const tools = [{ name: 'a', inputSchema: { type: 'object' }, execution: { taskSupport: 'forbidden' } }, { name: 'b', inputSchema: { type: 'object' } }];
    const list = { tools, [PRESERIALIZED]: { field: 'tools', json: JSON.stringify(tools) } };
    const encoded = JSON.parse(resultJson(toModernResult('tools/list', list))) as Record<string, unknown>;
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
    assert.equal(resultJson({ tools: [], [PRESERIALIZED]: { field: 'tools', json: '[]' } }), '{"tools":[]}');
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
});
