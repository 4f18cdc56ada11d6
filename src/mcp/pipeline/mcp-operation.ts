import type { CallToolResult } from '@modelcontextprotocol/server';
import type { Principal } from '../../auth/principal.js';
import type { Catalog, Target } from '../../upstreams/catalog.js';
import type { PolicyOperation } from '../../policies/policy-evaluator.js';
import type { CallingClient } from './server-requests.js';

/** Every MCP request method the gateway itself answers; each passes through the pipeline. */
export const MCP_OPERATION_KINDS = [
  'ping',
  'tools/list',
  'tools/call',
  'prompts/list',
  'prompts/get',
  'resources/list',
  'resources/read',
  'resources/templates/list',
  'completion/complete',
  'logging/setLevel',
  'resources/subscribe',
  'resources/unsubscribe',
] as const;
export type McpOperationKind = (typeof MCP_OPERATION_KINDS)[number];

/** The protocol era of the client: 2025-era sessions (`legacy`) or 2026-07-28 stateless (`modern`). */
export type McpEra = 'legacy' | 'modern';
/** Which edge served it: the SDK's serving, or Gatehouse's own fast path (same answers). */
export type McpPath = 'fast' | 'sdk';

/** The params each kind takes (already validated by the SDK or the fast path's own checks). */
export interface McpParams {
  ping: Record<string, unknown>;
  'tools/list': Record<string, unknown>;
  'tools/call': { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> };
  'prompts/list': Record<string, unknown>;
  'prompts/get': { name: string; arguments?: Record<string, string>; _meta?: Record<string, unknown> };
  'resources/list': Record<string, unknown>;
  'resources/read': { uri: string; _meta?: Record<string, unknown> };
  'resources/templates/list': Record<string, unknown>;
  'completion/complete': {
    ref: { type: 'ref/prompt'; name: string } | { type: 'ref/resource'; uri: string };
    argument: { name: string; value: string };
    context?: { arguments?: Record<string, string> };
    _meta?: Record<string, unknown>;
  };
  'logging/setLevel': { level: string; _meta?: Record<string, unknown> };
  /** 2025 era only (2026-07-28 replaced it with `resourceSubscriptions` in `subscriptions/listen`). */
  'resources/subscribe': { uri: string; _meta?: Record<string, unknown> };
  'resources/unsubscribe': { uri: string; _meta?: Record<string, unknown> };
}

/** One MCP operation as a client asked for it, before the pipeline has looked at it. */
export interface McpOperationRequest<K extends McpOperationKind = McpOperationKind> {
  kind: K;
  /** `''` for the aggregated `/mcp`, else the server name of `/mcp/<server>`. */
  scope: string;
  principal: Principal;
  params: McpParams[K];
  era: McpEra;
  path: McpPath;
  /** Aborted when the client goes away or cancels. */
  signal?: AbortSignal;
  /**
   * Sends a `notifications/progress` to the client (SDK path with a progress token only); the
   * promise settles once it is written, so the result can wait for it (notifications before
   * the response on the same stream).
   */
  notify?: (progress: Record<string, unknown>) => void | Promise<void>;
  /** The calling client, for requests an upstream sends back during the call (see {@link CallingClient}). */
  client?: CallingClient;
}

/**
 * A classified operation: the request plus its catalog and, for operations on one thing, the
 * upstream target and the policy check it needs (`policy` absent: lists, ping, setLevel — lists
 * are filtered per principal instead).
 */
export interface ClassifiedOperation<K extends McpOperationKind = McpOperationKind> extends McpOperationRequest<K> {
  catalog: Catalog;
  /** The upstream server and its own name/URI for the thing operated on. */
  target?: Target;
  /** The policy decision this operation needs: operation and namespaced name (`<server>__<name>`). */
  policy?: { operation: PolicyOperation; name: string };
}

/**
 * What became of an operation, as hooks see it. `ok`: a result was returned (a tool result
 * with `isError: true` is still `ok`, `toolError` says so); otherwise the JSON-RPC error the
 * client got.
 */
export type McpOutcome =
  | { ok: true; result: Record<string, unknown>; toolError: boolean }
  | { ok: false; error: { code: number; message: string; data?: unknown } };

export type { CallToolResult };
