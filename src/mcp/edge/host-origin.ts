import { Inject, Injectable } from '@nestjs/common';
import { HostOriginRules } from '../../common/http/host-origin.js';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { jsonRpcError } from './json-rpc.js';

/**
 * DNS-rebinding protection as `/mcp` sees it. The check itself is global now: every request,
 * `/mcp` included, meets {@link HostOriginRules} in a Fastify `onRequest` hook before routing
 * (`common/http/host-origin.ts`, installed by `startGatehouse`). This provider applies the same
 * rules, built from the same configuration, for code that serves `/mcp` outside that hook
 * (defence in depth; with the hook in place it finds nothing to refuse). MCP transports spec
 * (2025-06-18+, "Security Warning"): servers MUST validate the Origin header; an invalid Origin
 * is answered 403.
 */
@Injectable()
export class HostOriginCheck {
  private readonly rules: HostOriginRules;

  constructor(@Inject(APP_CONFIG) config: AppConfig) {
    this.rules = HostOriginRules.fromConfig(config);
  }

  /** Why `host`/`origin` are refused, or undefined when they are fine (see {@link HostOriginRules.problem}). */
  problem(host: string | undefined, origin: string | undefined): string | undefined {
    return this.rules.problem(host, origin);
  }

  /** The 403 JSON-RPC answer for a refused web `Request`, or undefined when it may pass. */
  reject(request: Request): Response | undefined {
    const problem = this.problem(request.headers.get('host') ?? undefined, request.headers.get('origin') ?? undefined);
    return problem ? jsonRpcError(403, -32000, problem) : undefined;
  }
}
