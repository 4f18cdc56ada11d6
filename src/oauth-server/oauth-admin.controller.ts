import { Body, Controller, Delete, Get, HttpCode, Param, Post } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { z } from 'zod';
import { RequiresPermission } from '../auth/auth.decorators.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { OAuthProviderService } from './oauth-provider.service.js';
import { RevokedGrantsService } from './revoked-grants.service.js';
import { SigningKeysService } from './signing-keys.service.js';

const uri = (what: string) => z.string().max(2000).refine((s) => URL.parse(s) !== null, { message: `expected ${what} (an absolute URI)` });

/** A pre-registered client (RFC 7591 metadata names). */
export const CreateClientSchema = z
  .object({
    client_name: z.string().min(1).max(200),
    redirect_uris: z.array(uri('a redirect URI')).min(1).max(20),
    token_endpoint_auth_method: z.enum(['none', 'private_key_jwt', 'client_secret_basic', 'client_secret_post']).default('none'),
    jwks_uri: uri('a JWKS URL').optional(),
    jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(10) }).optional(),
    grant_types: z.array(z.enum(['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'])).default(['authorization_code', 'refresh_token']),
    logo_uri: uri('an https logo URL').optional(),
    application_type: z.enum(['web', 'native']).optional(),
  })
  .strict();

/**
 * Admin API of the authorization server: pre-registered clients (trusted: remembered approvals
 * skip the consent page) and signing key rotation.
 */
@ApiTags('oauth')
@Controller('api/v1/oauth')
export class OAuthAdminController {
  constructor(
    private readonly db: DataSource,
    private readonly oauth: OAuthProviderService,
    private readonly keys: SigningKeysService,
    private readonly revocations: RevokedGrantsService,
  ) {}

  @Post('clients')
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: 'Pre-register an OAuth client (returns client_secret once for secret-based methods)' })
  async create(@Body() body: unknown): Promise<Record<string, unknown>> {
    const input = parseBody(CreateClientSchema, body);
    const provider = await this.oauth.provider();
    const metadata: Record<string, unknown> = { ...input, client_id: randomUUID(), response_types: ['code'] };
    if (input.token_endpoint_auth_method.startsWith('client_secret')) metadata.client_secret = randomBytes(32).toString('base64url');
    try {
      await (provider.Client as unknown as { validate(m: unknown): Promise<void> }).validate(metadata);
    } catch (error) {
      const e = error as { error_description?: string; message?: string };
      throw new AppError(ErrorCode.ValidationFailed, `client metadata: ${e.error_description ?? e.message ?? 'not valid'}`);
    }
    await this.db.query("INSERT INTO oauth_models (model, id, payload, client_id, source) VALUES ('Client', $1, $2, $1, 'admin')", [metadata.client_id, JSON.stringify(metadata)]);
    return metadata;
  }

  @Get('clients')
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'Registered OAuth clients (secrets omitted)' })
  async list(): Promise<{ items: Record<string, unknown>[] }> {
    const rows = await this.db.query<{ payload: Record<string, unknown>; source: string | null; created_at: Date }[]>(
      "SELECT payload, source, created_at FROM oauth_models WHERE model = 'Client' ORDER BY created_at DESC LIMIT 1000",
    );
    return { items: rows.map(({ payload: { client_secret: _s, registration_access_token: _t, ...rest }, source, created_at }) => ({ ...rest, source, createdAt: created_at.toISOString() })) };
  }

  @Delete('clients/:id')
  @RequiresPermission('admin:write')
  @HttpCode(204)
  @ApiOperation({ summary: 'Delete a client and every grant and token it holds (its access tokens are refused at once)' })
  async remove(@Param('id') id: string): Promise<void> {
    const grantIds = await this.db.transaction(async (em) => {
      const deleted = await em.query<[unknown[], number]>("DELETE FROM oauth_models WHERE model = 'Client' AND id = $1 RETURNING id", [id]);
      if ((deleted[1] ?? 0) === 0) throw new AppError(ErrorCode.NotFound, `no client with id "${id.slice(0, 200)}"`);
      const grants = await em.query<[{ id: string }[], number]>("DELETE FROM oauth_models WHERE client_id = $1 AND model <> 'Client' RETURNING CASE WHEN model = 'Grant' THEN id END AS id", [id]);
      const ids = grants[0].map((g) => g.id).filter((g): g is string => g !== null);
      await this.revocations.record(em, ids);
      return ids;
    });
    this.revocations.markLocally(grantIds);
  }

  @Post('keys/rotate')
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: 'Rotate the signing keys: new keys published now, signing after one minute; old ones published until their tokens expire' })
  async rotate(): Promise<{ kids: string[] }> {
    return { kids: await this.keys.rotate() };
  }
}
