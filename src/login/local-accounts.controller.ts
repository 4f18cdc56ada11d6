import { Body, Controller, Delete, HttpCode, Param, Post, Put } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { createLocalAccountSchema, setPasswordSchema } from './local-accounts.schema.js';
import { LocalAccountsService, type LocalAccountView } from './local-accounts.service.js';

/** Admin API for Gatehouse passwords (local accounts, for teams without an identity provider). */
@ApiTags('users')
@Controller('api/v1')
export class LocalAccountsController {
  constructor(private readonly accounts: LocalAccountsService) {}

  @Post('local-accounts')
  @RequiresPermission('admin:write')
  @HttpCode(201)
  @ApiOperation({ summary: 'Create a user who signs in with a Gatehouse password (username + password, optional email, name, roles)' })
  @ApiBody({ schema: jsonSchema(createLocalAccountSchema) })
  create(@Body() body: unknown, @CurrentPrincipal() actor: Principal): Promise<LocalAccountView> {
    return this.accounts.create(body, actor);
  }

  @Put('users/:id/password')
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: "Set or replace a user's Gatehouse password (ends their password-based browser sessions)" })
  @ApiBody({ schema: jsonSchema(setPasswordSchema) })
  setPassword(@Param('id') id: string, @Body() body: unknown, @CurrentPrincipal() actor: Principal): Promise<{ userId: string; username: string }> {
    return this.accounts.setPassword(id, body, actor);
  }

  @Delete('users/:id/password')
  @RequiresPermission('admin:write')
  @HttpCode(204)
  @ApiOperation({ summary: "Remove a user's Gatehouse password" })
  async removePassword(@Param('id') id: string, @CurrentPrincipal() actor: Principal): Promise<void> {
    await this.accounts.removePassword(id, actor);
  }
}
