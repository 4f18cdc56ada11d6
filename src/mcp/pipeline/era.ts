import { SERVER_INFO_META_KEY } from '@modelcontextprotocol/server';
import { CACHE_HINTS, GATEWAY_INFO } from '../gateway-server.js';
import { PRESERIALIZED, type Preserialized } from './mcp-operation-pipeline.js';
import type { McpEra, McpOperationKind } from './mcp-operation.js';

const EXTENDED_RESULT_TYPES = new Set<string>(['tools/call', 'prompts/get', 'resources/read']);
const CACHEABLE = new Set<string>(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

/**
 * A result as the 2026-07-28 revision puts it on the wire — what the SDK's encoder does for
 * its own path (`encodeContract.ts`): `resultType: "complete"` unless the handler set one
 * (only tools/call, prompts/get, resources/read may carry another); `ttlMs`/`cacheScope` on
 * cacheable results (the gateway's cache hints, else 0/private); the server's identity under
 * `_meta["io.modelcontextprotocol/serverInfo"]` unless present.
 */
export function toModernResult(kind: McpOperationKind, result: Record<string, unknown>): Record<string, unknown> {
  let out = result;
  if (out.resultType === undefined) out = { ...out, resultType: 'complete' };
  else if (out.resultType !== 'complete' && !EXTENDED_RESULT_TYPES.has(kind)) throw new Error(`${kind} returned resultType ${JSON.stringify(out.resultType)}`);
  if (out.resultType === 'complete' && CACHEABLE.has(kind)) {
    const hint = (CACHE_HINTS as Record<string, { ttlMs: number; cacheScope: string } | undefined>)[kind];
    const ttlMs = Number.isInteger(out.ttlMs) && (out.ttlMs as number) >= 0 ? out.ttlMs : (hint?.ttlMs ?? 0);
    const cacheScope = out.cacheScope === 'public' || out.cacheScope === 'private' ? out.cacheScope : (hint?.cacheScope ?? 'private');
    out = { ...out, ttlMs, cacheScope };
  }
  const meta = out._meta;
  if (meta === undefined) out = { ...out, _meta: { [SERVER_INFO_META_KEY]: GATEWAY_INFO } };
  else if (typeof meta === 'object' && meta !== null && !Array.isArray(meta) && (meta as Record<string, unknown>)[SERVER_INFO_META_KEY] === undefined) {
    out = { ...out, _meta: { ...meta, [SERVER_INFO_META_KEY]: GATEWAY_INFO } };
  }
  return out;
}

/** JSON text of `result`, splicing in a preserialized field (the 60 KB tools list is serialized once per catalog change). */
export function resultJson(result: Record<string, unknown> & Preserialized): string {
  const pre = result[PRESERIALIZED];
  if (!pre) return JSON.stringify(result);
  const rest: Record<string, unknown> = { ...result };
  delete rest[pre.field];
  const tail = JSON.stringify(rest);
  return tail === '{}' ? `{${JSON.stringify(pre.field)}:${pre.json}}` : `{${JSON.stringify(pre.field)}:${pre.json},${tail.slice(1)}`;
}

/** The JSON-RPC response text for `id`, its result encoded for `era`. */
export function responseJson(era: McpEra, kind: McpOperationKind, id: string | number, result: Record<string, unknown>): string {
  const encoded = era === 'modern' ? toModernResult(kind, result) : result;
  return `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${resultJson(encoded)}}`;
}
