import { Body, Controller, Get, Param, Patch, Query } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { patchUserSchema } from './users.schema.js';
import { UsersService, type UserView } from './users.service.js';

/** Admin API for users (created on first sign-in; admins set roles and disable). */
@ApiTags('users')
@Controller('api/v1/users')
export class UsersController {
  constructor(private readonly users: UsersService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'List users, oldest first (?limit=1-500&offset=n)' })
  list(@Query() query: unknown): Promise<{ items: UserView[]; total: number }> {
    return this.users.list(query);
  }

  @Patch(':id')
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: "Set a user's roles or disable them; disabling ends their sessions on every replica" })
  @ApiBody({ schema: jsonSchema(patchUserSchema) })
  patch(@Param('id') id: string, @Body() body: unknown, @CurrentPrincipal() actor: Principal): Promise<UserView> {
    return this.users.patch(id, body, actor);
  }
}
