import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { PoliciesController } from './policies.controller.js';
import { PoliciesService } from './policies.service.js';
import { PolicyEntity } from './policy.entity.js';

/** Per-operation rules, a pure evaluator, the admin controller. */
@Module({
  imports: [TypeOrmModule.forFeature([PolicyEntity])],
  controllers: [PoliciesController],
  providers: [PoliciesService],
  exports: [PoliciesService],
})
export class PoliciesModule {}
