import { ProtocolError, ProtocolErrorCode, SERVER_INFO_META_KEY } from '@modelcontextprotocol/server';
import { z } from 'zod';
import { CACHE_HINTS, GATEWAY_INFO } from '../gateway-server.js';
import { PRESERIALIZED, type Preserialized } from './mcp-operation-pipeline.js';
import type { McpEra, McpOperationKind } from './mcp-operation.js';

const EXTENDED_RESULT_TYPES = new Set<string>(['tools/call', 'prompts/get', 'resources/read']);
const CACHEABLE = new Set<string>(['tools/list', 'prompts/list', 'resources/list', 'resources/templates/list', 'resources/read']);

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Whether the SDK's 2025-era encoder rewrites this tool in a tools/list result: an
 * `outputSchema` whose root is not `type: "object"` is wrapped as `{ type: "object",
 * properties: { result: <schema> }, required: ["result"] }` (SDK `rev2025Codec.encodeResult`).
 */
export function needsLegacyToolWrap(tool: unknown): boolean {
  return isPlainObject(tool) && isPlainObject(tool.outputSchema) && tool.outputSchema.type !== 'object';
}

/** JSON Schema keywords whose presence makes the SDK rewrite references inside a wrapped schema. */
const REFERENCE_KEYWORDS = /"\$(ref|dynamicRef|recursiveRef|recursiveAnchor|id)"/;

/**
 * Whether the fast path can wrap this tool's schema exactly as the SDK does: only without
 * `$ref`/`$id`-style keywords (which the SDK rewrites); such tools leave legacy tools/list to the SDK.
 */
export function canWrapLikeSdk(tool: unknown): boolean {
  return !needsLegacyToolWrap(tool) || !REFERENCE_KEYWORDS.test(JSON.stringify((tool as { outputSchema: unknown }).outputSchema));
}

type PreserializedValue = NonNullable<Preserialized[typeof PRESERIALIZED]>;

/** Per tools array: its 2025-era preserialized `tools` when a tool's schema is wrapped, else null (sent as listed). */
const legacyToolsPre = new WeakMap<object, PreserializedValue | null>();

/**
 * `tools` as the SDK's 2025-era encoder sends them (non-object output schemas wrapped), as a
 * frozen preserialized value; null when no tool needs wrapping. Cached per list (a catalog's or
 * a policy view's tools array, never changed in place).
 */
function legacyTools(tools: unknown[]): PreserializedValue | null {
  let pre = legacyToolsPre.get(tools);
  if (pre === undefined) {
    pre = !tools.some(needsLegacyToolWrap)
      ? null
      : Object.freeze({
          field: 'tools',
          json: JSON.stringify(
            tools.map((tool) => {
              if (!needsLegacyToolWrap(tool)) return tool;
              const t = tool as Record<string, unknown> & { outputSchema: Record<string, unknown> };
              const $schema = typeof t.outputSchema.$schema === 'string' ? { $schema: t.outputSchema.$schema } : {};
              return { ...t, outputSchema: { ...$schema, type: 'object', properties: { result: t.outputSchema }, required: ['result'] } };
            }),
          ),
        });
    legacyToolsPre.set(tools, pre);
  }
  return pre;
}

const FOREIGN_TOOL_RESULT_KEYS = ['task', 'inputRequests', 'requestState'];
/** The part of the 2025 CallToolResult wire schema an upstream's result can break (its other parts the upstream's client already checked). */
const legacyStructuredContent = z.looseObject({ structuredContent: z.record(z.string(), z.unknown()).optional() });

/**
 * A tools/call result as the SDK's `Server` hands it on (both eras): a result without
 * `content` gets `content: []` (unless it is another result family).
 */
export function normalizeToolResult(result: Record<string, unknown>): Record<string, unknown> {
  if (result.content !== undefined || FOREIGN_TOOL_RESULT_KEYS.some((k) => k in result)) return result;
  return { ...result, content: [] };
}

/**
 * A result as the 2025-era revisions put it on the wire: tools/list's non-object output schemas
 * wrapped; a tools/call result whose `structuredContent` is not an object refused as the SDK's
 * `Server` refuses it (-32602 "Invalid tools/call result: …", the 2025 schema wants a record).
 */
export function toLegacyResult(kind: McpOperationKind, result: Record<string, unknown> & Preserialized): Record<string, unknown> {
  if (kind === 'tools/call') {
    const sc = result.structuredContent;
    if (sc !== undefined && !isPlainObject(sc)) {
      const parsed = legacyStructuredContent.safeParse(result);
      if (!parsed.success) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `Invalid tools/call result: ${String(parsed.error)}`);
    }
    return result;
  }
  if (kind !== 'tools/list' || !Array.isArray(result.tools)) return result;
  const wrapped = legacyTools(result.tools as unknown[]);
  return wrapped === null ? result : { ...result, [PRESERIALIZED]: wrapped };
}

const modernToolsPre = new WeakMap<object, PreserializedValue>();

/** `tools` without the 2025-only `execution` field (deleted from the 2026-07-28 Tool), as a frozen preserialized value; cached per list. */
function modernTools(tools: unknown[]): PreserializedValue {
  let pre = modernToolsPre.get(tools);
  if (pre === undefined) {
    const json = JSON.stringify(
      tools.map((tool) => {
        if (!isPlainObject(tool) || !('execution' in tool)) return tool;
        const rest = { ...tool };
        delete rest.execution;
        return rest;
      }),
    );
    modernToolsPre.set(tools, (pre = Object.freeze({ field: 'tools', json })));
  }
  return pre;
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
  // One copy of `result` at most (it is never changed in place), then its fields set on the
  // copy: the same keys in the same order as a spread copy per change would give.
  let out = result;
  let copied = false;
  if (kind === 'tools/list' && Array.isArray(result.tools)) {
    const tools = result.tools as unknown[];
    out = { ...result, [PRESERIALIZED]: modernTools(tools) };
    copied = true;
  }
  if (out.resultType === undefined) {
    if (!copied) {
      out = { ...out };
      copied = true;
    }
    out.resultType = 'complete';
  } else if (out.resultType !== 'complete' && !EXTENDED_RESULT_TYPES.has(kind)) throw new Error(`${kind} returned resultType ${JSON.stringify(out.resultType)}`);
  if (out.resultType === 'complete' && CACHEABLE.has(kind)) {
    const hint = (CACHE_HINTS as Record<string, { ttlMs: number; cacheScope: string } | undefined>)[kind];
    const ttlMs = Number.isInteger(out.ttlMs) && (out.ttlMs as number) >= 0 ? out.ttlMs : (hint?.ttlMs ?? 0);
    const cacheScope = out.cacheScope === 'public' || out.cacheScope === 'private' ? out.cacheScope : (hint?.cacheScope ?? 'private');
    if (!copied) {
      out = { ...out };
      copied = true;
    }
    out.ttlMs = ttlMs;
    out.cacheScope = cacheScope;
  }
  const meta = out._meta;
  if (meta === undefined || (typeof meta === 'object' && meta !== null && !Array.isArray(meta) && (meta as Record<string, unknown>)[SERVER_INFO_META_KEY] === undefined)) {
    if (!copied) out = { ...out };
    out._meta = meta === undefined ? { [SERVER_INFO_META_KEY]: GATEWAY_INFO } : { ...meta, [SERVER_INFO_META_KEY]: GATEWAY_INFO };
  }
  return out;
}

/** JSON text of `result`'s fields other than `field` (`{}` when it has no other). */
function restJson(result: Record<string, unknown>, field: string): string {
  let others = false;
  for (const key in result) {
    if (key !== field) {
      others = true;
      break;
    }
  }
  if (!others) return '{}';
  const rest: Record<string, unknown> = { ...result };
  delete rest[field];
  return JSON.stringify(rest);
}

/** `{"<field>":<json>,<rest's members>}`: a preserialized field spliced first into `rest` (JSON of the other fields). */
const spliced = (pre: PreserializedValue, rest: string) => (rest === '{}' ? `{${JSON.stringify(pre.field)}:${pre.json}}` : `{${JSON.stringify(pre.field)}:${pre.json},${rest.slice(1)}`);

/** Bytes kept free before a cached answer end for the `{"jsonrpc":"2.0","id":<id>` head; a longer head gets a buffer of its own. */
const HEAD_ROOM = 96;
/** Answer buffers kept for reuse per answer end (one suffices while answers are written at once). */
const SPARES_MAX = 4;

interface AnswerTail {
  /** JSON of the result's fields other than the preserialized one, as `bytes` were made with. */
  rest: string;
  /** `,"result":<result JSON>}` as UTF-8. */
  bytes: Buffer;
  /** Blocks of HEAD_ROOM + bytes.length, `bytes` already at the end, free to reuse ({@link releaseAnswer}). */
  spares: Buffer[];
}

/** Per preserialized value (frozen, one per tools array and era): its answers' common end. */
const answerTails = new WeakMap<PreserializedValue, AnswerTail>();
/** Answers lent out of a reusable block, until {@link releaseAnswer} gives the block back. */
const lent = new WeakMap<Buffer, { tail: AnswerTail; block: Buffer }>();

/**
 * The JSON-RPC response for `id`, its result encoded for `era`: JSON text, or — for a result
 * with a preserialized field (a whole tools list) — the same text as UTF-8 bytes: the head
 * `{"jsonrpc":"2.0","id":<id>` written just before the rest, `,"result":…}`, which is cached
 * per preserialized value (and the JSON of the result's other fields, compared per request)
 * in a block reused once the caller says the answer was written ({@link releaseAnswer}).
 * Measured (bench/list-cpu.mjs, bench/list-alloc.mjs, 2026-11-30): a 40 KB answer as a string
 * cost per request its flattening (twice), Fastify's Buffer.byteLength and the socket write's
 * UTF-8 encoding, ~80 KB of V8 heap; a fresh 40 KB Buffer per request instead cost page faults
 * (freed only by GC, so malloc kept handing out fresh pages). A reused block costs the head.
 * Throws the `ProtocolError` the SDK would answer instead.
 */
export function responseAnswer(era: McpEra, kind: McpOperationKind, id: string | number, result: Record<string, unknown>): string | Buffer {
  const normalized = kind === 'tools/call' ? normalizeToolResult(result) : result;
  const encoded = era === 'modern' ? toModernResult(kind, normalized) : toLegacyResult(kind, normalized);
  const pre = (encoded as Preserialized)[PRESERIALIZED];
  if (!pre) return `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${JSON.stringify(encoded)}}`;
  const rest = restJson(encoded, pre.field);
  let tail = answerTails.get(pre);
  if (tail === undefined || tail.rest !== rest) answerTails.set(pre, (tail = { rest, bytes: Buffer.from(`,"result":${spliced(pre, rest)}}`), spares: [] }));
  const head = `{"jsonrpc":"2.0","id":${JSON.stringify(id)}`;
  const headBytes = Buffer.byteLength(head);
  if (headBytes > HEAD_ROOM) {
    const answer = Buffer.allocUnsafe(headBytes + tail.bytes.length);
    answer.write(head, 0, 'utf8');
    tail.bytes.copy(answer, headBytes);
    return answer;
  }
  let block = tail.spares.pop();
  if (block === undefined) {
    block = Buffer.allocUnsafe(HEAD_ROOM + tail.bytes.length);
    tail.bytes.copy(block, HEAD_ROOM);
  }
  block.write(head, HEAD_ROOM - headBytes, 'utf8');
  const answer = block.subarray(HEAD_ROOM - headBytes);
  lent.set(answer, { tail, block });
  return answer;
}

/**
 * Gives back the block of an answer of {@link responseAnswer} for reuse: call only once nothing
 * refers to `answer` any more — in particular once it was written to the socket (not merely
 * queued). An answer never released is simply collected. No-op for anything else, or twice.
 */
export function releaseAnswer(answer: Buffer): void {
  const loan = lent.get(answer);
  if (loan === undefined) return;
  lent.delete(answer);
  if (loan.tail.spares.length < SPARES_MAX) loan.tail.spares.push(loan.block);
}
