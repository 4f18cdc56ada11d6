import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { UpstreamsModule } from '../upstreams/upstreams.module.js';
import { KeyRingModule } from './key-ring.module.js';
import { SecretEntity } from './secret.entity.js';
import { MySecretsController, ServerSecretsController } from './secrets.controller.js';
import { SecretsService } from './secrets.service.js';

/** Encrypted per-user and shared secrets, and their resolution for upstream calls. */
@Module({
  imports: [TypeOrmModule.forFeature([SecretEntity]), UpstreamsModule, KeyRingModule],
  controllers: [MySecretsController, ServerSecretsController],
  providers: [SecretsService],
  exports: [SecretsService],
})
export class SecretsModule {}
