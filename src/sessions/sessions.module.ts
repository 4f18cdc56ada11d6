import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { McpSessionEntity } from './mcp-session.entity.js';
import { SessionsController } from './sessions.controller.js';
import { SessionsService } from './sessions.service.js';

/** Legacy MCP sessions persisted in PostgreSQL, shared by every replica; admin API `/api/v1/sessions`. */
@Module({
  imports: [TypeOrmModule.forFeature([McpSessionEntity])],
  controllers: [SessionsController],
  providers: [SessionsService],
  exports: [SessionsService],
})
export class SessionsModule {}
