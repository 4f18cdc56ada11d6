import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import type { Prompt, Resource, Tool } from '@modelcontextprotocol/client';
import { PinoLogger } from 'nestjs-pino';
import { Repository } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { isUuid } from '../common/validation/uuid.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { NAME_SEPARATOR, type Catalog, type Target } from '../upstreams/catalog.js';
import { PolicyEntity } from './policy.entity.js';
import { evaluate, type Decision, type PolicyOperation, type PolicyPrincipal, type PolicyRule, type PolicySubject } from './policy-evaluator.js';
import { createPolicySchema, patchPolicySchema } from './policy.schema.js';

/** Bus topic: the policy set changed; every replica reloads it. */
export const POLICIES_CHANGED = 'policies.changed';

export type PolicyView = PolicyRule & { createdAt: string; updatedAt: string };

/** What a principal may see of one catalog, computed once per (catalog, principal, policy set). */
interface View {
  version: number;
  tools: Tool[];
  toolsJson: string;
  prompts: Prompt[];
  resources: Resource[];
}


function toRule(row: PolicyEntity): PolicyRule {
  return {
    id: row.id,
    subject: { [row.subjectType]: row.subjectValue } as PolicySubject,
    effect: row.effect,
    operations: row.operations,
    targets: row.targets,
    description: row.description,
  };
}

function toView(row: PolicyEntity): PolicyView {
  const rule = toRule(row);
  return { ...rule, createdAt: row.createdAt.toISOString(), updatedAt: row.updatedAt.toISOString() };
}

function subjectColumns(subject: Record<string, string>): Pick<PolicyEntity, 'subjectType' | 'subjectValue'> {
  const [[type, value]] = Object.entries(subject) as [[PolicyEntity['subjectType'], string]];
  return { subjectType: type, subjectValue: value };
}

/**
 * Per-operation authorization: the policy set (PostgreSQL, admin API), kept in memory on every
 * replica and reloaded on change, so a check costs no database round-trip. Names checked are
 * the gateway's namespaced ones (`<server>__<tool>`), whichever endpoint the call came through.
 */
@Injectable()
export class PoliciesService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private rules: PolicyRule[] = [];
  private version = 0;
  private readonly views = new WeakMap<Catalog, Map<string, View>>();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectRepository(PolicyEntity) private readonly repo: Repository<PolicyEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Policies');
  }

  onApplicationBootstrap(): void {
    const reload = () => void this.reload().catch((error: unknown) => this.logger.error({ err: error }, 'could not load policies'));
    this.unsubscribe.push(this.bus.subscribe(POLICIES_CHANGED, reload), this.bus.subscribe(RESYNC_TOPIC, reload));
    void this.schema.whenMigrated().then(reload);
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Decides one operation on one namespaced target. */
  decide(principal: PolicyPrincipal, operation: PolicyOperation, target: string): Decision {
    return evaluate(this.rules, principal, operation, target, this.config.policies.defaultEffect);
  }

  /** The catalog as `principal` may use it (tools, prompts, resources), cached until anything changes. */
  view(catalog: Catalog, scope: string, principal: PolicyPrincipal): View {
    const key = JSON.stringify([principal.userId, principal.apiKeyId, principal.roles, principal.groups]);
    let byPrincipal = this.views.get(catalog);
    if (!byPrincipal) this.views.set(catalog, (byPrincipal = new Map<string, View>()));
    const cached = byPrincipal.get(key);
    if (cached?.version === this.version) return cached;
    // Policies match the upstream's own names (`<server>__<original>`), as calls are authorized:
    // an exposed name may be a stand-in for one that breaks the MCP name rule.
    const allowed = (operation: PolicyOperation, target: Target | undefined) =>
      target !== undefined && this.decide(principal, operation, `${target.server}${NAME_SEPARATOR}${target.name}`).allowed;
    const tools = catalog.tools.filter((t) => allowed('tools/call', catalog.resolveTool(t.name)));
    const view: View = {
      version: this.version,
      tools,
      toolsJson: tools.length === catalog.tools.length ? catalog.toolsJson : JSON.stringify(tools),
      prompts: catalog.prompts.filter((p) => allowed('prompts/get', catalog.resolvePrompt(p.name))),
      resources: catalog.resources.filter((r) => allowed('resources/read', catalog.resolveResource(r.uri))),
    };
    byPrincipal.set(key, view);
    return view;
  }

  async list(): Promise<PolicyView[]> {
    return (await this.repo.find({ order: { createdAt: 'ASC' } })).map(toView);
  }

  async create(body: unknown): Promise<PolicyView> {
    const input = parseBody(createPolicySchema, body);
    const saved = await this.repo.save(
      this.repo.create({ ...subjectColumns(input.subject), effect: input.effect, operations: input.operations, targets: input.targets, description: input.description ?? null }),
    );
    await this.changed();
    return toView(saved);
  }

  async patch(id: string, body: unknown): Promise<PolicyView> {
    const input = parseBody(patchPolicySchema, body);
    const row = await this.find(id);
    const { subject, ...rest } = input;
    this.repo.merge(row, { ...rest, ...(subject ? subjectColumns(subject) : {}) });
    const saved = await this.repo.save(row);
    await this.changed();
    return toView(saved);
  }

  async remove(id: string): Promise<void> {
    await this.repo.remove(await this.find(id));
    await this.changed();
  }

  private async find(id: string): Promise<PolicyEntity> {
    const row = isUuid(id) ? await this.repo.findOneBy({ id }) : null;
    if (!row) throw new AppError(ErrorCode.NotFound, `policy "${id}" does not exist`);
    return row;
  }

  private async changed(): Promise<void> {
    await this.reload();
    await this.bus.publish(POLICIES_CHANGED);
  }

  private async reload(): Promise<void> {
    this.rules = (await this.repo.find({ order: { createdAt: 'ASC' } })).map(toRule);
    this.version++;
  }
}
