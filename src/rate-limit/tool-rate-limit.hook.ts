import { Injectable } from '@nestjs/common';
import { ProtocolError } from '@modelcontextprotocol/server';
import type { AuthorizedOperation } from '../mcp/pipeline/authorized-operation.js';
import { McpOperationHookProvider, type McpOperationHook } from '../mcp/pipeline/mcp-operation-hooks.js';
import { rateLimitMessage, RateLimitService } from './rate-limit.service.js';

/** JSON-RPC error code of a `tools/call` refused by a per-tool limit (implementation-defined server range). */
export const TOOL_RATE_LIMITED = -32029;

/**
 * The per-tool limits (HTTP_RATE_LIMIT_TOOLS) as an MCP operation hook, first of all hooks:
 * a `tools/call` whose namespaced name (`<server>__<tool>`, the upstream's own tool name — the
 * same name policies match) matches a rule's glob is charged to (principal, rule). Over budget
 * the call is refused with JSON-RPC error -32029 whose message names the limit and the setting
 * and whose `data` is `{ code: "rate_limited", retryAfterSeconds, limit, setting }` — a
 * JSON-RPC error inside the exchange, since the HTTP status of an MCP exchange is already
 * decided (and a stream may be open) when the tool is known.
 */
@McpOperationHookProvider({ order: -100 })
@Injectable()
export class ToolRateLimitHook implements McpOperationHook {
  constructor(private readonly limits: RateLimitService) {}

  beforeCall(authorized: AuthorizedOperation): Promise<void> | void {
    const op = authorized.operation;
    if (op.kind !== 'tools/call' || !op.policy || !this.limits.hasToolRules) return;
    return this.check(op.principal.id, op.policy.name);
  }

  private async check(principal: string, tool: string): Promise<void> {
    const decision = await this.limits.chargeTool(principal, tool);
    if (!decision || decision.allowed) return;
    const retryAfterSeconds = Math.max(1, Math.ceil(decision.resetMs / 1000));
    throw new ProtocolError(TOOL_RATE_LIMITED, `${rateLimitMessage(decision, this.limits.windowMs, `calls of "${tool}"`)}`, {
      code: 'rate_limited',
      retryAfterSeconds,
      limit: decision.limit,
      setting: decision.setting,
    });
  }
}
