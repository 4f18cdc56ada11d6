import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { UpstreamServersService, type UpstreamServerView } from './upstream-servers.service.js';

/**
 * Admin API for upstream MCP servers. Authentication and the `admin` role are enforced by the
 * global guard once it exists (see docs/auth.md); until then run with MCP_AUTH_STRATEGY=none
 * on a trusted network only.
 */
@Controller('api/v1/servers')
export class UpstreamServersController {
  constructor(private readonly servers: UpstreamServersService) {}

  @Get()
  async list(): Promise<{ items: UpstreamServerView[] }> {
    return { items: await this.servers.list() };
  }

  @Post()
  @HttpCode(201)
  create(@Body() body: unknown): Promise<UpstreamServerView> {
    return this.servers.create(body);
  }

  @Get(':name')
  get(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.get(name);
  }

  @Patch(':name')
  patch(@Param('name') name: string, @Body() body: unknown): Promise<UpstreamServerView> {
    return this.servers.patch(name, body);
  }

  @Delete(':name')
  @HttpCode(204)
  async remove(@Param('name') name: string): Promise<void> {
    await this.servers.remove(name);
  }

  @Post(':name/enable')
  @HttpCode(200)
  enable(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.setEnabled(name, true);
  }

  @Post(':name/disable')
  @HttpCode(200)
  disable(@Param('name') name: string): Promise<UpstreamServerView> {
    return this.servers.setEnabled(name, false);
  }

  @Get(':name/tools')
  tools(@Param('name') name: string): ReturnType<UpstreamServersService['tools']> {
    return this.servers.tools(name);
  }
}
