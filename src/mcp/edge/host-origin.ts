import { Inject, Injectable } from '@nestjs/common';
import { validateHostHeader, validateOriginHeader } from '@modelcontextprotocol/server';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { jsonRpcError } from './json-rpc.js';

/**
 * DNS-rebinding protection for `/mcp`. MCP transports spec (2025-06-18+, "Security Warning"):
 * servers MUST validate the Origin header; an invalid Origin is answered 403. Host is checked
 * too, since a rebinding attack reaches us with the attacker's host name. Configured by
 * `HTTP_ALLOWED_HOSTS`, `HTTP_CORS_ORIGINS`, `MCP_DNS_REBINDING_PROTECTION`.
 */
@Injectable()
export class HostOriginCheck {
  private readonly allowedHosts: string[];
  private readonly allowedOrigins: Set<string>;

  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {
    this.allowedHosts = config.mcp.allowedHosts.map((h) => h.replace(/^\[|\]$/g, ''));
    this.allowedOrigins = new Set(config.mcp.allowedOrigins);
  }

  /** Why `host`/`origin` are refused, or undefined when they are fine. */
  problem(host: string | undefined, origin: string | undefined): string | undefined {
    if (!this.config.mcp.dnsRebindingProtection) return undefined;
    if (!validateHostHeader(host, this.allowedHosts).ok) return `Forbidden: Host ${JSON.stringify(host ?? '')} is not allowed (HTTP_ALLOWED_HOSTS)`;
    // An Origin is accepted when configured exactly, or when its host name is an allowed host
    // (any port): the SDK's rule and the conformance suite's — localhost, 127.0.0.1, [::1].
    if (origin !== undefined && !this.allowedOrigins.has(origin) && !validateOriginHeader(origin, this.allowedHosts).ok) {
      return `Forbidden: Origin ${JSON.stringify(origin)} is not allowed (HTTP_CORS_ORIGINS)`;
    }
    return undefined;
  }

  /** The 403 JSON-RPC answer for a refused web `Request`, or undefined when it may pass. */
  reject(request: Request): Response | undefined {
    const problem = this.problem(request.headers.get('host') ?? undefined, request.headers.get('origin') ?? undefined);
    return problem ? jsonRpcError(403, -32000, problem) : undefined;
  }
}
