import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, CurrentPrincipal } from './auth.decorators.js';
import type { Principal } from './principal.js';

/** Who the caller is, as Gatehouse sees it: for clients, scripts and debugging a setup. */
@ApiTags('me')
@Controller('api/v1/me')
export class MeController {
  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'The calling principal: identity, roles, groups, permissions, auth method' })
  me(@CurrentPrincipal() principal: Principal): Principal {
    return principal;
  }
}
