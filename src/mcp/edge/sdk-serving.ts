import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { createMcpHandler, legacyStatelessFallback, type LegacyHttpHandler, type McpHttpHandler, type McpRequestContext } from '@modelcontextprotocol/server';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../../config/config.module.js';
import type { AppConfig } from '../../config/config.schema.js';
import { UNAUTHENTICATED_PRINCIPAL, type Principal } from '../../auth/principal.js';
import { createGatewayServer, type ServedSession } from '../gateway-server.js';
import { McpOperationPipeline } from '../pipeline/mcp-operation-pipeline.js';
import type { OfferingKind } from '../../upstreams/offering-kinds.js';
import { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';

export interface SdkHandlers {
  modern: McpHttpHandler;
  legacy: LegacyHttpHandler;
}

/**
 * The SDK's serving entries, one pair per scope: `createMcpHandler` (modern era, spec
 * validation ladder, `server/discover`, cache hints, `subscriptions/listen`) and
 * `legacyStatelessFallback` (one 2025-era POST). Each exchange gets a gateway server from the
 * factory (the SDK serves one exchange per instance); its handlers are the pipeline, and the
 * principal reaches them as the SDK's pass-through `authInfo.extra.principal`.
 */
@Injectable()
export class SdkServing implements BeforeApplicationShutdown {
  private readonly handlers = new Map<string, SdkHandlers>();

  constructor(
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly pipeline: McpOperationPipeline,
    private readonly logger: PinoLogger,
    private readonly upstreams: UpstreamServersService,
  ) {
    logger.setContext('McpSdk');
  }

  /** The handlers of `scope` (`''` = `/mcp`), built on first use. */
  handlersFor(scope: string): SdkHandlers {
    let handlers = this.handlers.get(scope);
    if (!handlers) {
      const factory = (ctx: McpRequestContext) =>
        createGatewayServer({
          scope,
          pipeline: this.pipeline,
          // No principal (never the case behind the guard): the most restricted one.
          principal: (ctx.authInfo?.extra?.principal as Principal | undefined) ?? UNAUTHENTICATED_PRINCIPAL,
          era: ctx.era === 'modern' ? 'modern' : 'legacy',
          session: ctx.authInfo?.extra?.session as ServedSession | undefined,
          upstreamInstructions: this.upstreams.catalog(scope)?.instructions,
          subscribable: this.upstreams.subscribable(scope),
        });
      const onerror = (error: Error) => this.logger.debug({ scope, error: error.message }, 'MCP request rejected');
      handlers = {
        modern: createMcpHandler(factory, { legacy: 'reject', onerror }),
        legacy: legacyStatelessFallback(factory, onerror, { maxRequestBodySize: this.config.http.maxRequestBytes }),
      };
      this.handlers.set(scope, handlers);
    }
    return handlers;
  }

  /** Tells modern `subscriptions/listen` streams of the scopes that include `server` which of its lists changed. */
  listChanged(server: string, kinds: readonly OfferingKind[]): void {
    for (const [scope, handlers] of this.handlers) {
      if (scope !== '' && scope !== server) continue;
      const notify = handlers.modern.notify;
      for (const kind of kinds) {
        if (kind === 'tools') notify.toolsChanged();
        else if (kind === 'prompts') notify.promptsChanged();
        else notify.resourcesChanged();
      }
    }
  }

  /**
   * Tells the modern `subscriptions/listen` streams of `scope` that listen for `uri` (the URI as
   * that scope names it) that the resource changed (`notifications/resources/updated`).
   */
  resourceUpdated(scope: string, uri: string): void {
    // The SDK's listen router delivers it to the streams whose filter names `uri`, stamped with their subscription id.
    this.handlers.get(scope)?.modern.notify.resourceUpdated(uri);
  }

  async beforeApplicationShutdown(): Promise<void> {
    await Promise.all([...this.handlers.values()].map((h) => h.modern.close()));
  }
}
