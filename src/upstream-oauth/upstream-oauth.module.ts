import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { KeyRingModule } from '../secrets/key-ring.module.js';
import { SecretsModule } from '../secrets/secrets.module.js';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { MyConnectionsController, ServerConnectionController } from './connections.controller.js';
import { UpstreamOAuthConnectionEntity } from './upstream-oauth-connection.entity.js';
import { TokenExchangeService } from './token-exchange.service.js';
import { UpstreamConnectionsService } from './upstream-connections.service.js';

/**
 * Per-user OAuth connections to upstream servers (issue 14): the `upstream_oauth_connections`
 * table, {@link UpstreamConnectionsService} (store, token for a call, refresh, step-up,
 * revocation) and its API. See docs/upstream-oauth.md.
 */
@Module({
  imports: [TypeOrmModule.forFeature([UpstreamOAuthConnectionEntity]), UpstreamsModule, KeyRingModule, SecretsModule],
  controllers: [MyConnectionsController, ServerConnectionController],
  providers: [UpstreamConnectionsService, TokenExchangeService],
  exports: [UpstreamConnectionsService],
})
export class UpstreamOAuthModule {}
