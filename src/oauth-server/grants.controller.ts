import { Controller, Delete, Get, HttpCode, Param } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, CurrentPrincipal, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { isUuid } from '../common/validation/uuid.js';
import { GrantsService, type GrantView } from './grants.service.js';

function ownUser(principal: Principal): string {
  if (!principal.userId) throw new AppError(ErrorCode.Forbidden, 'approvals belong to users; this principal is not a user');
  return principal.userId;
}

/** The caller's approvals of OAuth clients (remembered consent), revocable. */
@ApiTags('oauth')
@Controller('api/v1/me/grants')
export class MyGrantsController {
  constructor(private readonly grants: GrantsService) {}

  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'The applications you approved (OAuth grants)' })
  async list(@CurrentPrincipal() principal: Principal): Promise<{ items: GrantView[] }> {
    return { items: await this.grants.list(ownUser(principal)) };
  }

  @Delete(':id')
  @Authenticated()
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke an approval: its refresh tokens stop working at once' })
  async revoke(@CurrentPrincipal() principal: Principal, @Param('id') id: string): Promise<void> {
    await this.grants.revoke(ownUser(principal), id);
  }
}

/** An admin's view of a user's approvals. */
@ApiTags('oauth')
@Controller('api/v1/users/:userId/grants')
export class UserGrantsController {
  constructor(private readonly grants: GrantsService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: "A user's approvals of OAuth clients" })
  async list(@Param('userId') userId: string): Promise<{ items: GrantView[] }> {
    if (!isUuid(userId)) throw new AppError(ErrorCode.NotFound, `no user with id "${userId.slice(0, 64)}"`);
    return { items: await this.grants.list(userId) };
  }

  @Delete(':id')
  @RequiresPermission('admin:write')
  @HttpCode(204)
  @ApiOperation({ summary: "Revoke one of a user's approvals" })
  async revoke(@Param('userId') userId: string, @Param('id') id: string): Promise<void> {
    if (!isUuid(userId)) throw new AppError(ErrorCode.NotFound, `no user with id "${userId.slice(0, 64)}"`);
    await this.grants.revoke(userId, id);
  }
}
