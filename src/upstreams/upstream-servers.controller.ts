import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiParam, ApiQuery, ApiResponse, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { RequiresPermission } from '../auth/auth.decorators.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { parseBody } from '../common/validation/parse-body.js';
import { SERVER_LOG_CAPACITY, type ServerLogEntry } from './server-log.js';
import { createServerSchema, patchServerSchema } from './upstream-server.schema.js';
import { UpstreamServersService, type UpstreamServerView } from './upstream-servers.service.js';

const ERROR = { description: 'JSON error `{ error: { code, message, requestId } }`' };

const LIMIT = `expected an integer 1-${SERVER_LOG_CAPACITY}`;
/** `GET /api/v1/servers/:name/logs` query: `limit` 1–500 (100). */
export const serverLogsQuery = z
  .object({ limit: z.coerce.number({ error: LIMIT }).int({ error: LIMIT }).min(1, { error: LIMIT }).max(SERVER_LOG_CAPACITY, { error: LIMIT }).default(100) })
  .strict();

/**
 * Admin API for upstream MCP servers. Authentication and the `admin` role are enforced by the
 * global guard once it exists; until then run on localhost or a trusted network only.
 */
@ApiTags('servers')
@ApiParam({ name: 'name', required: false, description: 'server name, a slug [a-z0-9][a-z0-9-]{0,62}' })
@Controller('api/v1/servers')
export class UpstreamServersController {
  constructor(private readonly servers: UpstreamServersService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'List upstream servers with their live status' })
  async list(): Promise<{ items: UpstreamServerView[] }> {
    return { items: await this.servers.list() };
  }

  @Post()
  @RequiresPermission('servers:write')
  @HttpCode(201)
  @ApiOperation({ summary: 'Register an upstream MCP server' })
  @ApiBody({ schema: jsonSchema(createServerSchema) })
  @ApiResponse({ status: 201, description: 'the server, with status' })
  @ApiResponse({ status: 400, ...ERROR })
  @ApiResponse({ status: 409, ...ERROR })
  create(@Body() body: unknown): Promise<UpstreamServerView> {
    return this.servers.create(body);
  }

  @Get(':name')
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'One server with its live status' })
  @ApiResponse({ status: 404, ...ERROR })
  get(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.get(name);
  }

  @Patch(':name')
  @RequiresPermission('servers:write')
  @ApiOperation({ summary: 'Change some fields of a server; it reconnects on every replica' })
  @ApiBody({ schema: jsonSchema(patchServerSchema) })
  @ApiResponse({ status: 400, ...ERROR })
  @ApiResponse({ status: 404, ...ERROR })
  patch(@Param('name') name: string, @Body() body: unknown): Promise<UpstreamServerView> {
    return this.servers.patch(name, body);
  }

  @Delete(':name')
  @RequiresPermission('servers:write')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a server; its processes are stopped on every replica' })
  async remove(@Param('name') name: string): Promise<void> {
    await this.servers.remove(name);
  }

  @Post(':name/enable')
  @RequiresPermission('servers:write')
  @HttpCode(200)
  @ApiOperation({ summary: 'Enable a server' })
  enable(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.setEnabled(name, true);
  }

  @Post(':name/disable')
  @RequiresPermission('servers:write')
  @HttpCode(200)
  @ApiOperation({ summary: 'Disable a server (its connections and processes stop)' })
  disable(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.setEnabled(name, false);
  }

  @Get(':name/logs')
  @RequiresPermission('admin:read')
  @ApiOperation({
    summary: "The server's recent log lines on this replica, newest last (?limit=1-500, default 100)",
    description:
      'Its stdio stderr, the notifications/message it sent on the shared connection, and connection events (connected, failed and why, closed), masked like every other output. Each replica keeps its own last 500 lines, in memory; per-user connections are not included.',
  })
  @ApiQuery({ name: 'limit', required: false, description: 'lines to return, 1-500 (default 100)' })
  @ApiResponse({ status: 200, description: '`{ server, items: [{ at, source: stderr|notification|event, level, text }] }`' })
  @ApiResponse({ status: 400, ...ERROR })
  @ApiResponse({ status: 404, ...ERROR })
  logs(@Param('name') name: string, @Query() query: unknown): Promise<{ server: string; items: ServerLogEntry[] }> {
    return this.servers.logs(name, parseBody(serverLogsQuery, query).limit);
  }

  @Get(':name/tools')
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: "The upstream's own tool list, unfiltered, under its own names" })
  tools(@Param('name') name: string): ReturnType<UpstreamServersService['tools']> {
    return this.servers.tools(name);
  }
}
