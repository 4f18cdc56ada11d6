import { SERVER_INFO_META_KEY } from '@modelcontextprotocol/server';
import { CACHE_HINTS, GATEWAY_INFO } from '../gateway-server.js';
import { PRESERIALIZED, type Preserialized } from './mcp-operation-pipeline.js';
import type { McpEra, McpOperationKind } from './mcp-operation.js';

const EXTENDED_RESULT_TYPES = new Set<string>(['tools/call', 'prompts/get', 'resources/read']);
const CACHEABLE = new Set<string>(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Whether the SDK's 2025-era encoder would rewrite this tool in a tools/list result: an
 * `outputSchema` whose root is not `type: "object"` is wrapped for legacy clients (SDK
 * `rev2025Codec.encodeResult`). The fast path leaves such lists to the SDK.
 */
export function needsLegacyToolWrap(tool: unknown): boolean {
  return isPlainObject(tool) && isPlainObject(tool.outputSchema) && tool.outputSchema.type !== 'object';
}

const modernToolsJson = new WeakMap<object, string>();

/** `tools` without the 2025-only `execution` field (deleted from the 2026-07-28 Tool), as JSON; cached per list. */
function modernTools(tools: unknown[]): string {
  let json = modernToolsJson.get(tools);
  if (json === undefined) {
    json = JSON.stringify(
      tools.map((tool) => {
        if (!isPlainObject(tool) || !('execution' in tool)) return tool;
        const rest = { ...tool };
        delete rest.execution;
        return rest;
      }),
    );
    modernToolsJson.set(tools, json);
  }
  return json;
}

/**
 * A result as the 2026-07-28 revision puts it on the wire — what the SDK's encoder does for
 * its own path (`rev2026Codec.encodeResult`): tools lose the deleted `execution` field;
 * `resultType: "complete"` unless the handler set one
 * (only tools/call, prompts/get, resources/read may carry another); `ttlMs`/`cacheScope` on
 * cacheable results (the gateway's cache hints, else 0/private); the server's identity under
 * `_meta["io.modelcontextprotocol/serverInfo"]` unless present.
 */
export function toModernResult(kind: McpOperationKind, result: Record<string, unknown> & Preserialized): Record<string, unknown> {
  let out = result;
  if (kind === 'tools/list' && Array.isArray(result.tools)) {
    const tools = result.tools as unknown[];
    out = { ...result, [PRESERIALIZED]: { field: 'tools', json: modernTools(tools) } };
  }
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
