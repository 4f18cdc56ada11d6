import { Controller, Get, Header, Inject, Param } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { Public } from '../common/decorators/public.decorator.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { PERMISSIONS } from './principal.js';

/** RFC 9728 protected resource metadata. */
export interface ProtectedResourceMetadata {
  resource: string;
  resource_name: string;
  authorization_servers?: string[];
  bearer_methods_supported: ['header'];
  scopes_supported: string[];
}

/**
 * OAuth 2.0 Protected Resource Metadata (RFC 9728), which MCP clients read after a 401 to find
 * the authorization server (MCP authorization spec, "Authorization Server Discovery"). The
 * MCP resource is `PUBLIC_URL/mcp` (no trailing slash: clients compare it byte for byte with
 * the URL they connected to); single-server endpoints are their own resources, and so is the
 * admin API (`PUBLIC_URL/api`): a token is accepted only on the resource it names
 * (see docs/auth.md, "Token audience").
 */
@ApiTags('auth')
@Controller('.well-known/oauth-protected-resource')
export class ProtectedResourceController {
  constructor(@Inject(APP_CONFIG) private readonly config: AppConfig) {}

  @Get()
  @Public()
  @Header('cache-control', 'public, max-age=300')
  @ApiOperation({ summary: 'Protected resource metadata of the MCP endpoint (RFC 9728)' })
  root(): ProtectedResourceMetadata {
    return this.metadata(`${this.config.http.publicUrl}/mcp`);
  }

  @Get('mcp')
  @Public()
  @Header('cache-control', 'public, max-age=300')
  @ApiOperation({ summary: 'Protected resource metadata of /mcp (RFC 9728 §3.1, path-specific)' })
  mcp(): ProtectedResourceMetadata {
    return this.metadata(`${this.config.http.publicUrl}/mcp`);
  }

  @Get('api')
  @Public()
  @Header('cache-control', 'public, max-age=300')
  @ApiOperation({ summary: 'Protected resource metadata of the admin API (its own audience, PUBLIC_URL/api)' })
  api(): ProtectedResourceMetadata {
    return this.metadata(`${this.config.http.publicUrl}/api`, 'Gatehouse admin API');
  }

  @Get('mcp/:server')
  @Public()
  @Header('cache-control', 'public, max-age=300')
  @ApiOperation({ summary: 'Protected resource metadata of a single-server endpoint /mcp/<server>' })
  server(@Param('server') server: string): ProtectedResourceMetadata {
    return this.metadata(`${this.config.http.publicUrl}/mcp/${encodeURIComponent(server)}`);
  }

  private metadata(resource: string, name = 'Gatehouse MCP gateway'): ProtectedResourceMetadata {
    const issuer = this.config.auth.strategies.includes('oauth2') ? this.config.auth.oauth.issuer : undefined;
    return {
      resource,
      resource_name: name,
      ...(issuer ? { authorization_servers: [issuer] } : {}),
      bearer_methods_supported: ['header'],
      scopes_supported: [...PERMISSIONS],
    };
  }
}
