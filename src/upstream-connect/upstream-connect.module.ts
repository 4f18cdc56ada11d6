import { Module } from '@nestjs/common';
import { LoginModule } from '../login/login.module.js';
import { KeyRingModule } from '../secrets/key-ring.module.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { UpstreamOAuthModule } from '../upstream-oauth/upstream-oauth.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { UsersModule } from '../users/users.module.js';
import { ConnectAsk } from './connect-ask.service.js';
import { ConnectFlowService } from './connect-flow.service.js';
import { ConnectLinks } from './connect-links.service.js';
import { ConnectController } from './connect.controller.js';
import { RegisteredClients } from './registered-clients.store.js';

/**
 * How a user obtains their own OAuth token for an upstream MCP server (issue 14): the connect
 * links handed to MCP clients ({@link ConnectLinks}, {@link ConnectAsk}: the era's URL
 * elicitation, `input_required` or tool error), the `/connect/<server>` page and the callback
 * ({@link ConnectController}, {@link ConnectFlowService} on the SDK's `auth()`), Gatehouse's
 * dynamic registrations per issuer ({@link RegisteredClients}). The tokens go to the
 * upstream-oauth module's `UpstreamConnectionsService`. See docs/upstream-oauth.md.
 */
@Module({
  imports: [UpstreamOAuthModule, UpstreamsModule, LoginModule, UsersModule, SecretsModule, KeyRingModule],
  controllers: [ConnectController],
  providers: [ConnectLinks, ConnectAsk, ConnectFlowService, RegisteredClients],
  exports: [ConnectAsk, ConnectLinks],
})
export class UpstreamConnectModule {}
