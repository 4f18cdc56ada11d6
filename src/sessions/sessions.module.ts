import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { McpSessionEntity } from './mcp-session.entity.js';
import { SessionsService } from './sessions.service.js';

/** Legacy MCP sessions persisted in PostgreSQL, shared by every replica. */
@Module({
  imports: [TypeOrmModule.forFeature([McpSessionEntity])],
  providers: [SessionsService],
  exports: [SessionsService],
})
export class SessionsModule {}
