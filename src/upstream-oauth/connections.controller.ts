import { Body, Controller, Delete, Get, HttpCode, Param, Put } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { Authenticated, CurrentPrincipal, RequiresPermission } from '../auth/auth.decorators.js';
import type { Principal } from '../auth/principal.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { parseBody } from '../common/validation/parse-body.js';
import { putConnectionSchema, type PutConnectionInput } from './connections.schema.js';
import { UpstreamConnectionsService, type AuthorizationServerBinding, type ConnectionView, type DeleteResult, type UpstreamTokens } from './upstream-connections.service.js';
import type { ConnectionSource } from './upstream-oauth-connection.entity.js';

/** The body split into what `save` takes. */
function toSave(input: PutConnectionInput): { tokens: UpstreamTokens; binding: AuthorizationServerBinding } {
  const expiresAt = input.expiresIn !== undefined ? new Date(Date.now() + input.expiresIn * 1000) : input.expiresAt ? new Date(input.expiresAt) : null;
  return {
    tokens: { accessToken: input.accessToken, refreshToken: input.refreshToken ?? null, expiresAt, scopes: input.scopes ?? [], account: input.account ?? null },
    binding: {
      issuer: input.issuer ?? null,
      tokenEndpoint: input.tokenEndpoint ?? null,
      revocationEndpoint: input.revocationEndpoint ?? null,
      clientId: input.clientId ?? null,
      clientSecret: input.clientSecret ?? null,
      authMethod: input.authMethod ?? null,
      resource: input.resource ?? null,
    },
  };
}

async function store(connections: UpstreamConnectionsService, server: string, owner: string | null, body: unknown, source: ConnectionSource): Promise<ConnectionView> {
  const { tokens, binding } = toSave(parseBody(putConnectionSchema, body));
  return connections.save(server, owner, tokens, binding, source);
}

/** Your own OAuth connections to upstream servers (issue 14): tokens go in, never out. */
@ApiTags('connections')
@Controller('api/v1/me/connections')
export class MyConnectionsController {
  constructor(private readonly connections: UpstreamConnectionsService) {}

  private owner(principal: Principal): string {
    const owner = this.connections.ownerOf(principal);
    if (!owner) throw new AppError(ErrorCode.Unauthorized, 'connections belong to an authenticated principal; send credentials');
    return owner;
  }

  @Get()
  @Authenticated()
  @ApiOperation({ summary: 'Your upstream OAuth connections (and the shared ones of servers you have none for): server, account, scopes, expiry, status — never tokens' })
  async list(@CurrentPrincipal() principal: Principal): Promise<{ items: ConnectionView[] }> {
    return { items: await this.connections.list(this.owner(principal)) };
  }

  @Put(':server')
  @Authenticated()
  @ApiOperation({ summary: 'Store tokens you obtained elsewhere for a server with oauth (and what refreshing and revoking them needs)' })
  @ApiBody({ schema: jsonSchema(putConnectionSchema) })
  async put(@Param('server') server: string, @Body() body: unknown, @CurrentPrincipal() principal: Principal): Promise<ConnectionView> {
    return store(this.connections, server, this.owner(principal), body, 'api');
  }

  @Delete(':server')
  @Authenticated()
  @HttpCode(200)
  @ApiOperation({ summary: 'Disconnect: revokes the tokens at the provider where it supports RFC 7009, and removes them in any case (the answer says which)' })
  async remove(@Param('server') server: string, @CurrentPrincipal() principal: Principal): Promise<DeleteResult> {
    return this.connections.delete(server, this.owner(principal));
  }
}

/** A server's shared OAuth connection: used by every caller who has not connected their own. */
@ApiTags('connections')
@Controller('api/v1/servers/:server/connection')
export class ServerConnectionController {
  constructor(private readonly connections: UpstreamConnectionsService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: "The server's shared OAuth connection: account, scopes, expiry, status — never tokens" })
  async get(@Param('server') server: string): Promise<ConnectionView> {
    const view = await this.connections.get(server, null);
    if (!view) throw new AppError(ErrorCode.NotFound, `server "${server}" has no shared OAuth connection`);
    return view;
  }

  @Put()
  @RequiresPermission('servers:write')
  @ApiOperation({ summary: 'Set the shared OAuth connection (used only for callers without their own)' })
  @ApiBody({ schema: jsonSchema(putConnectionSchema) })
  async put(@Param('server') server: string, @Body() body: unknown): Promise<ConnectionView> {
    return store(this.connections, server, null, body, 'admin');
  }

  @Delete()
  @RequiresPermission('servers:write')
  @HttpCode(200)
  @ApiOperation({ summary: 'Remove the shared OAuth connection, revoking it at the provider where possible' })
  async remove(@Param('server') server: string): Promise<DeleteResult> {
    return this.connections.delete(server, null);
  }
}
