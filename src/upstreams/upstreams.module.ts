import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { UpstreamServersController } from './upstream-servers.controller.js';
import { UpstreamServersService } from './upstream-servers.service.js';

/** Upstream MCP servers: registry, admin API, and this replica's connections to them. */
@Module({
  imports: [TypeOrmModule.forFeature([UpstreamServerEntity])],
  controllers: [UpstreamServersController],
  providers: [UpstreamServersService],
  exports: [UpstreamServersService],
})
export class UpstreamsModule {}
