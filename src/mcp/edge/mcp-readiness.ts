import { Injectable } from '@nestjs/common';
import { ReadinessGates } from '../../database/readiness-gates.js';

/** Readiness gates `/mcp` waits for: without policies nothing can be authorized, without the registry nothing routed. */
export const MCP_GATES = ['policies', 'servers'] as const;
/** Seconds a client is told to wait (`Retry-After`) while a gate is not ok. */
export const MCP_RETRY_AFTER_S = 1;

/**
 * Whether `/mcp` may serve: every gate in {@link MCP_GATES} that is registered (the policies
 * and upstreams modules register theirs) must be `ok`. A gate nobody registered does not
 * block. Otherwise `/mcp` answers 503 with a JSON-RPC error (`data.code: "service_unavailable"`)
 * and `Retry-After`, rather than a wrong answer (an empty tools list, a default-effect decision).
 */
@Injectable()
export class McpReadiness {
  constructor(private readonly gates: ReadinessGates) {}

  /** The reason `/mcp` cannot serve now (naming the gates), or undefined. */
  notReady(): string | undefined {
    if (this.gates.allOk()) return undefined;
    const failing = this.gates.failing();
    const blocking = failing.filter((g) => (MCP_GATES as readonly string[]).includes(g.name));
    if (blocking.length === 0) return undefined;
    return `Service unavailable: this replica is not ready to serve MCP (${blocking.map((g) => `${g.name}: ${g.reason ?? g.state}`).join('; ')}); retry shortly`;
  }

  /** The JSON-RPC error body of the 503 for `reason`. */
  static body(reason: string): string {
    return JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message: reason, data: { code: 'service_unavailable' } }, id: null });
  }
}
