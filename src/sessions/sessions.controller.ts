import { Controller, Delete, Get, HttpCode, Param, Query } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { RequiresPermission } from '../auth/auth.decorators.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { pgSafe } from '../common/validation/pg-safe.js';
import { SessionsService, type SessionView } from './sessions.service.js';

/** `GET /api/v1/sessions` query: `principal` (exact id, e.g. `api_key:…`, `none:anonymous`), `limit` 1–500 (100), `offset` ≥ 0. */
export const listSessionsQuery = z
  .object({
    principal: pgSafe(z.string({ error: 'expected a principal id' }).min(1, { error: 'expected a principal id' }).max(500, { error: 'expected at most 500 characters' })).optional(),
    limit: z.coerce.number({ error: 'expected an integer 1-500' }).int({ error: 'expected an integer 1-500' }).min(1).max(500).default(100),
    offset: z.coerce.number({ error: 'expected an integer ≥ 0' }).int({ error: 'expected an integer ≥ 0' }).min(0).default(0),
  })
  .strict();

const SESSION_ID = /^[0-9a-f]{64}$/;

/**
 * Admin API for open legacy MCP sessions: list them (least recently used first, filter by
 * principal, paginated) and end one on every replica. Sessions are named by the SHA-256 of
 * their token, never by the token itself.
 */
@ApiTags('sessions')
@Controller('api/v1/sessions')
export class SessionsController {
  constructor(private readonly sessions: SessionsService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'List open MCP sessions, least recently used first (?principal=&limit=1-500&offset=n); never the session token' })
  list(@Query() query: unknown): Promise<{ items: SessionView[]; total: number }> {
    return this.sessions.list(parseBody(listSessionsQuery, query));
  }

  @Delete(':id')
  @HttpCode(204)
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: 'End an open MCP session on every replica (its streams close; the client gets 404 and starts a new one)' })
  async close(@Param('id') id: string): Promise<void> {
    if (!SESSION_ID.test(id) || !(await this.sessions.closeById(id))) throw new AppError(ErrorCode.NotFound, "no open session has this id");
  }
}
