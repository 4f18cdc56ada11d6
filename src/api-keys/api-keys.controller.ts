import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, CurrentPrincipal } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { createApiKeySchema } from './api-keys.schema.js';
import { ApiKeysService, type ApiKeyView } from './api-keys.service.js';

/**
 * API keys for clients and bots. Any authenticated principal manages its own keys (never
 * beyond its own permissions); admins see and revoke all.
 */
@ApiTags('api-keys')
@Controller('api/v1/api-keys')
export class ApiKeysController {
  constructor(private readonly keys: ApiKeysService) {}

  @Post()
  @Authenticated()
  @HttpCode(201)
  @ApiOperation({ summary: 'Create a key; the response holds the key, shown this once only' })
  @ApiBody({ schema: jsonSchema(createApiKeySchema) })
  create(@Body() body: unknown, @CurrentPrincipal() principal: Principal): Promise<ApiKeyView & { key: string }> {
    return this.keys.create(body, principal);
  }

  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'Your keys (admins: all keys), never the key itself' })
  async list(@CurrentPrincipal() principal: Principal): Promise<{ items: ApiKeyView[] }> {
    return { items: await this.keys.list(principal) };
  }

  @Delete(':id')
  @Authenticated()
  @HttpCode(204)
  @ApiOperation({ summary: 'Revoke a key: refused on every replica within a second, its MCP sessions end' })
  async revoke(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<void> {
    await this.keys.revoke(id, principal);
  }
}
