import { Module } from '@nestjs/common';
import { DiscoveryModule } from '@nestjs/core';
import { PoliciesModule } from '../policies/policies.module.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { SessionsModule } from '../sessions/sessions.module.js';
import { UpstreamConnectModule } from '../upstream-connect/upstream-connect.module.js';
import { UpstreamOAuthModule } from '../upstream-oauth/upstream-oauth.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { McpFastPath } from './edge/fast-path.js';
import { HostOriginCheck } from './edge/host-origin.js';
import { LegacyLifecycle } from './edge/legacy-lifecycle.js';
import { LegacySessions } from './edge/legacy-sessions.js';
import { McpReadiness } from './edge/mcp-readiness.js';
import { NotificationFanout } from './edge/notification-fanout.js';
import { SdkServing } from './edge/sdk-serving.js';
import { McpController } from './mcp.controller.js';
import { McpEdgeService } from './mcp-edge.service.js';
import { McpOperationPipeline } from './pipeline/mcp-operation-pipeline.js';
import { InputRequiredRelay } from './pipeline/input-required-relay.js';
import { ClientRequests, InputRequiredBroker } from './pipeline/server-requests.js';
import { SessionSubscriptions } from './pipeline/resource-subscriptions.js';
import { LogLevels } from './pipeline/log-levels.js';

/**
 * The MCP endpoints: the edge (readiness, Host/Origin, fast path, legacy sessions, SDK serving,
 * notification fan-out) and the one operation pipeline behind all of it. Hooks
 * (`@McpOperationHookProvider()`) are discovered in any module.
 */
@Module({
  imports: [DiscoveryModule, UpstreamsModule, SessionsModule, PoliciesModule, SecretsModule, UpstreamOAuthModule, UpstreamConnectModule],
  controllers: [McpController],
  providers: [McpOperationPipeline, ClientRequests, InputRequiredBroker, InputRequiredRelay, SessionSubscriptions, LogLevels, McpReadiness, HostOriginCheck, McpFastPath, LegacySessions, LegacyLifecycle, SdkServing, NotificationFanout, McpEdgeService],
  exports: [McpEdgeService, McpOperationPipeline],
})
export class McpModule {}
