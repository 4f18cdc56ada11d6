import { Body, Controller, Delete, Get, HttpCode, Param, Put } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, CurrentPrincipal, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { putSecretSchema } from './secrets.schema.js';
import { SHARED_OWNER, SecretsService, secretOwner, type SecretView } from './secrets.service.js';

function ownerOf(principal: Principal): string {
  const owner = secretOwner(principal);
  if (!owner) throw new AppError(ErrorCode.Unauthorized, 'secrets belong to an authenticated principal; send credentials');
  return owner;
}

/** Your own secrets: write-only (no endpoint returns a value). */
@ApiTags('secrets')
@Controller('api/v1/me/secrets')
export class MySecretsController {
  constructor(private readonly secrets: SecretsService) {}

  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'Your secrets: server, name and updatedAt only, never values' })
  async list(@CurrentPrincipal() principal: Principal): Promise<{ items: SecretView[] }> {
    return { items: await this.secrets.list(ownerOf(principal)) };
  }

  @Put(':server/:name')
  @Authenticated()
  @HttpCode(204)
  @ApiOperation({ summary: 'Set (create or replace) your secret NAME for a server; injected into calls made on your behalf' })
  @ApiBody({ schema: jsonSchema(putSecretSchema) })
  async put(@Param('server') server: string, @Param('name') name: string, @Body() body: unknown, @CurrentPrincipal() principal: Principal): Promise<void> {
    await this.secrets.put(ownerOf(principal), server, name, body);
  }

  @Delete(':server/:name')
  @Authenticated()
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete your secret NAME for a server' })
  async remove(@Param('server') server: string, @Param('name') name: string, @CurrentPrincipal() principal: Principal): Promise<void> {
    await this.secrets.remove(ownerOf(principal), server, name);
  }
}

/** A server's shared secrets, used by every caller without an own value of that name. */
@ApiTags('secrets')
@Controller('api/v1/servers/:server/secrets')
export class ServerSecretsController {
  constructor(private readonly secrets: SecretsService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: "The server's shared secrets: name and updatedAt only" })
  async list(@Param('server') server: string): Promise<{ items: SecretView[] }> {
    return { items: await this.secrets.list(SHARED_OWNER, server) };
  }

  @Put(':name')
  @RequiresPermission('servers:write')
  @HttpCode(204)
  @ApiOperation({ summary: 'Set a shared secret for the server (a user’s own secret of the same name wins)' })
  @ApiBody({ schema: jsonSchema(putSecretSchema) })
  async put(@Param('server') server: string, @Param('name') name: string, @Body() body: unknown): Promise<void> {
    await this.secrets.put(SHARED_OWNER, server, name, body);
  }

  @Delete(':name')
  @RequiresPermission('servers:write')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a shared secret' })
  async remove(@Param('server') server: string, @Param('name') name: string): Promise<void> {
    await this.secrets.remove(SHARED_OWNER, server, name);
  }
}
