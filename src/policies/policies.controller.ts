import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { RequiresPermission } from '../auth/auth.decorators.js';
import { jsonSchema } from '../common/validation/json-schema.js';
import { PoliciesService, type PolicyView } from './policies.service.js';
import { createPolicySchema, patchPolicySchema } from './policy.schema.js';

/** Admin API for per-operation policies (who may call which tools, prompts and resources). */
@ApiTags('policies')
@Controller('api/v1/policies')
export class PoliciesController {
  constructor(private readonly policies: PoliciesService) {}

  @Get()
  @RequiresPermission('admin:read')
  @ApiOperation({ summary: 'List policies, oldest first (the order denies are reported in)' })
  async list(): Promise<{ items: PolicyView[] }> {
    return { items: await this.policies.list() };
  }

  @Post()
  @RequiresPermission('admin:write')
  @HttpCode(201)
  @ApiOperation({ summary: 'Add a policy; it applies on every replica within a second' })
  @ApiBody({ schema: jsonSchema(createPolicySchema) })
  create(@Body() body: unknown): Promise<PolicyView> {
    return this.policies.create(body);
  }

  @Patch(':id')
  @RequiresPermission('admin:write')
  @ApiOperation({ summary: 'Change a policy' })
  @ApiBody({ schema: jsonSchema(patchPolicySchema) })
  patch(@Param('id') id: string, @Body() body: unknown): Promise<PolicyView> {
    return this.policies.patch(id, body);
  }

  @Delete(':id')
  @RequiresPermission('admin:write')
  @HttpCode(204)
  @ApiOperation({ summary: 'Remove a policy' })
  async remove(@Param('id') id: string): Promise<void> {
    await this.policies.remove(id);
  }
}
