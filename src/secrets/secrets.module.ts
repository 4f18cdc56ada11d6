import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { keyRingProvider } from './key-ring.provider.js';
import { SecretEntity } from './secret.entity.js';
import { MySecretsController, ServerSecretsController } from './secrets.controller.js';
import { SecretsService } from './secrets.service.js';

/** Encrypted per-user and shared secrets, and their resolution for upstream calls. */
@Module({
  imports: [TypeOrmModule.forFeature([SecretEntity]), UpstreamsModule],
  controllers: [MySecretsController, ServerSecretsController],
  providers: [keyRingProvider, SecretsService],
  exports: [SecretsService],
})
export class SecretsModule {}
