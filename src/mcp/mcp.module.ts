import { Module } from '@nestjs/common';
import { PoliciesModule } from '../policies/policies.module.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { SessionsModule } from '../sessions/sessions.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { McpController } from './mcp.controller.js';
import { McpEdgeService } from './mcp-edge.service.js';

/** The MCP endpoints: era classification, legacy sessions and streams, modern requests, dispatch. */
@Module({
  imports: [UpstreamsModule, SessionsModule, PoliciesModule, SecretsModule],
  controllers: [McpController],
  providers: [McpEdgeService],
  exports: [McpEdgeService],
})
export class McpModule {}
