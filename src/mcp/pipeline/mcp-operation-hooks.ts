import { DiscoveryService } from '@nestjs/core';
import type { ClassifiedOperation, McpOperationRequest, McpOutcome } from './mcp-operation.js';
import type { AuthorizedOperation } from './authorized-operation.js';

/**
 * An extension point of the MCP operation pipeline (rate limiter, audit writer, metrics). Every
 * method is optional; the pipeline calls them in registration order:
 *
 * - `beforeCall(op)`: after authorization, before the upstream is routed and called. Throwing a
 *   `ProtocolError` (from `@modelcontextprotocol/server`) refuses the operation with that
 *   JSON-RPC error (the rate limiter's hook): later `beforeCall`s and the call do not run, every
 *   hook's `afterCall` still does, with that error as the outcome. May return a promise
 *   (awaited only then).
 * - `afterCall(op, outcome, durationMs)`: once the outcome is known (result, tool error, or
 *   protocol error), before it is written to the client. Must not throw (errors are logged and
 *   dropped); a returned promise is not awaited.
 * - `onRefused(request, error)`: an operation that never got authorized — an unknown
 *   tool/prompt/resource, a policy denial (`error.code === -32003`). Must not throw.
 *
 * `op.operation` carries `kind`, `scope`, `principal`, `era`, `path`, `params`, `target`
 * (`{ server, name }` with the upstream's own name) and `policy` (`{ operation, name }`, the
 * namespaced name the policy decided on). Outcomes never contain credentials: the pipeline
 * hands hooks what the client sees.
 */
export interface McpOperationHook {
  beforeCall?(op: AuthorizedOperation): void | Promise<void>;
  afterCall?(op: AuthorizedOperation, outcome: McpOutcome, durationMs: number): void;
  onRefused?(request: McpOperationRequest | ClassifiedOperation, error: { code: number; message: string; data?: unknown }): void;
}

/**
 * Registers a Nest provider as an {@link McpOperationHook}: decorate the class (in any module
 * of the app, e.g. `@McpOperationHookProvider() @Injectable() class RateLimiter implements
 * McpOperationHook`) and the pipeline finds it at start-up through Nest's discovery, like a
 * multi-provider. `order` (default 0) sorts hooks ascending: rate limit < audit < metrics.
 */
export const McpOperationHookProvider = DiscoveryService.createDecorator<{ order?: number } | undefined>();

/** Alias naming the extension point in docs and logs. */
export const MCP_OPERATION_HOOKS = McpOperationHookProvider.KEY;
