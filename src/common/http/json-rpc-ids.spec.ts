import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { protectedIds, protectIds, rawNumericIds, restoreIds } from './json-rpc-ids.js';

describe('JSON-RPC ids', () => {
  it('finds the raw text of top-level and batch-element numeric ids only', () => {
    assert.deepEqual(rawNumericIds('{"params":{"id":1},"x":"\\"id\\":2","id" : 1e400}'), ['1e400']);
    assert.deepEqual(Array.from(rawNumericIds('[{"id":"a"},{"p":[{"id":3}],"id":-12345678901234567890}]')), [undefined, '-12345678901234567890']);
  });

  it('replaces unsafe and repeated ids by placeholders and writes them back', () => {
    const request = {} as IncomingMessage;
    const text = '[{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":"a","method":"ping"},{"jsonrpc":"2.0","id":9007199254740993,"method":"ping"}]';
    const body = JSON.parse(text) as { id: unknown }[];
    protectIds(request, body, text);
    assert.equal(body[0].id, 'a');
    assert.ok(Number.isSafeInteger(body[1].id) && Number.isSafeInteger(body[2].id) && body[1].id !== body[2].id);
    const answer = `[{"id":"a"},{"id":${String(body[1].id)},"result":{}},{"result":{},"id":${String(body[2].id)}}]`;
    assert.equal(restoreIds(answer, protectedIds(request)), '[{"id":"a"},{"id":"a","result":{}},{"result":{},"id":9007199254740993}]');
  });

  it('leaves ordinary messages alone', () => {
    const request = {} as IncomingMessage;
    protectIds(request, { jsonrpc: '2.0', id: 7, method: 'ping' }, '{"jsonrpc":"2.0","id":7,"method":"ping"}');
    assert.equal(protectedIds(request), undefined);
  });

  it('restores ids in an answer given as UTF-8 bytes (a list answered from cached bytes); without placeholders the bytes themselves', () => {
    const request = {} as IncomingMessage;
    const raw = '{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}';
    const body = JSON.parse(raw) as { id: number };
    protectIds(request, body, raw);
    const answer = Buffer.from(`{"jsonrpc":"2.0","id":${body.id},"result":{"tools":[{"name":"ü"}]}}`);
    assert.equal(restoreIds(answer, protectedIds(request)), '{"jsonrpc":"2.0","id":9007199254740993,"result":{"tools":[{"name":"ü"}]}}');
    assert.equal(restoreIds(answer, undefined), answer);
  });
});
