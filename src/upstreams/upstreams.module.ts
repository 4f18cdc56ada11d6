import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { systemClock, UPSTREAM_CLOCK } from './clock.js';
import { nodeSpawner, PROCESS_SPAWNER } from './process-spawner.js';
import { ListingStore } from './listing-store.js';
import { UpstreamCatalog } from './upstream-catalog.service.js';
import { UpstreamPoolService } from './upstream-pool.service.js';
import { UpstreamRegistry } from './upstream-registry.service.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';
import { UpstreamServersController } from './upstream-servers.controller.js';
import { UpstreamServersService } from './upstream-servers.service.js';
import { UpstreamSupervisor } from './upstream-supervisor.service.js';

/**
 * Upstream MCP servers: registry (CRUD, servers file), supervisor (this replica's connection per
 * server), per-caller pool, catalog — behind the {@link UpstreamServersService} facade — and the
 * admin API. Clock and process spawner are providers, so tests can replace them.
 */
@Module({
  imports: [TypeOrmModule.forFeature([UpstreamServerEntity])],
  controllers: [UpstreamServersController],
  providers: [
    { provide: UPSTREAM_CLOCK, useValue: systemClock },
    { provide: PROCESS_SPAWNER, useValue: nodeSpawner },
    UpstreamRegistry,
    UpstreamSupervisor,
    UpstreamPoolService,
    UpstreamCatalog,
    ListingStore,
    UpstreamServersService,
  ],
  exports: [UpstreamServersService],
})
export class UpstreamsModule {}
