import { Inject, Injectable, Optional, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
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
import { backoffDelay, realTimers, type Timers } from '../database/backoff.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { RESYNC_TOPIC, topic } from '../database/change-bus.js';
import { ReadinessGates, type ReadinessGate } from '../database/readiness-gates.js';
import { SchemaStateService } from '../database/schema-state.service.js';
import { NAME_SEPARATOR, type Catalog, type Target } from '../upstreams/catalog.js';
import type { Principal } from '../auth/principal.js';
import { DecisionMemo } from './decision-memo.js';
import { PolicyEntity } from './policy.entity.js';
import { evaluate, type Decision, type PolicyOperation, type PolicyPrincipal, type PolicyRule, type PolicySubject } from './policy-evaluator.js';
import { createPolicySchema, patchPolicySchema } from './policy.schema.js';

/** Bus topic (no payload): the policy set changed; every replica reloads it. */
export const POLICIES_CHANGED = topic<null>('policies.changed', () => null);

/** Injection token for the {@link Timers} the load retries use (tests provide manual ones; default real). */
export const POLICY_TIMERS = Symbol('POLICY_TIMERS');

/** Retry bounds (ms) for a failed load: 0.5 s … 30 s, jittered. */
const RETRY_BACKOFF = { min: 500, max: 30_000 };

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
 *
 * Fails closed: until the first load succeeds, {@link decide} denies everything (whatever
 * GATEHOUSE_POLICY_DEFAULT says), {@link loaded} is false, and the readiness gate `policies` is
 * `pending` (`error` with the reason while loads fail; they are retried with jittered
 * exponential backoff, 0.5 … 30 s). Loads are serialized and each one reads after every trigger
 * it answers, so the set in effect is never older than the newest completed read — a reload that
 * started before a change can no longer finish after (and overwrite) the one the change caused.
 */
@Injectable()
export class PoliciesService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private rules: PolicyRule[] = [];
  private version = 0;
  private isLoaded = false;
  /** Reload triggers so far; each load answers every trigger counted when it started. */
  private requested = 0;
  /** The trigger count the rules in effect answer. */
  private applied = 0;
  private draining = false;
  private readonly waiters: { gen: number; resolve: () => void; reject: (error: Error) => void }[] = [];
  private retryTimer: unknown;
  private attempt = 0;
  private closed = false;
  private readonly gate: ReadinessGate;
  private readonly timers: Timers;
  private readonly views = new WeakMap<Catalog, Map<string, View>>();
  private readonly memo = new DecisionMemo();
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectRepository(PolicyEntity) private readonly repo: Repository<PolicyEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly schema: SchemaStateService,
    private readonly logger: PinoLogger,
    gates: ReadinessGates,
    @Optional() @Inject(POLICY_TIMERS) timers?: Timers,
  ) {
    logger.setContext('Policies');
    this.gate = gates.register('policies');
    this.gate.set('pending', 'not loaded yet (loads once the schema is current)');
    this.timers = timers ?? realTimers;
  }

  onApplicationBootstrap(): void {
    // Failures are logged and retried by the loader; a trigger's own promise is not awaited here.
    const reload = () => void this.reload().catch(() => undefined);
    this.unsubscribe.push(this.bus.subscribe(POLICIES_CHANGED, reload), this.bus.subscribe(RESYNC_TOPIC, reload));
    void this.schema.whenMigrated().then(reload);
  }

  beforeApplicationShutdown(): void {
    this.closed = true;
    this.timers.clearTimeout(this.retryTimer);
    for (const off of this.unsubscribe.splice(0)) off();
    this.settle(Number.MAX_SAFE_INTEGER, new Error('shutting down'));
  }

  /**
   * True once a policy set has loaded. Until then every {@link decide} denies; the MCP edge
   * answers 503 meanwhile rather than a policy error.
   */
  get loaded(): boolean {
    return this.isLoaded;
  }

  /** Resolves once the first policy set has loaded (never rejects; loads are retried). */
  whenLoaded(): Promise<void> {
    return this.gate.whenOk();
  }

  /**
   * Decides one operation on one namespaced target. Before the first load: denied, `by:
   * 'default'` (check {@link loaded} to tell the two apart).
   */
  decide(principal: PolicyPrincipal, operation: PolicyOperation, target: string): Decision {
    if (!this.isLoaded) return { allowed: false, by: 'default' };
    return evaluate(this.rules, principal, operation, target, this.config.policies.defaultEffect);
  }

  /**
   * {@link decide} for an authenticated principal, remembered per (principal object, operation,
   * target, policy-set version) ({@link DecisionMemo}): the MCP pipeline's per-call check.
   */
  decideFor(principal: Principal, operation: PolicyOperation, target: string): Decision {
    if (!this.isLoaded) return { allowed: false, by: 'default' };
    // recall/remember rather than memo.decide(…, closure): no closure per call.
    let decision = this.memo.recall(principal, this.version, operation, target);
    if (decision === undefined) {
      decision = evaluate(this.rules, { userId: principal.userId, apiKeyId: principal.keyId, roles: principal.roles, groups: principal.groups }, operation, target, this.config.policies.defaultEffect);
      this.memo.remember(principal, this.version, operation, target, decision);
    }
    return decision;
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
    const filtered = catalog.tools.filter((t) => allowed('tools/call', catalog.resolveTool(t.name)));
    // Every tool allowed: the catalog's own array, so what is cached per tools array (the
    // encoded tools/list answers, era.ts) is shared by every view of the catalog, not per principal.
    const tools = filtered.length === catalog.tools.length ? catalog.tools : filtered;
    const view: View = {
      version: this.version,
      tools,
      toolsJson: tools === catalog.tools ? catalog.toolsJson : JSON.stringify(tools),
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
    const saved = await this.repo.manager.transaction(async (em) => {
      const row = await em.save(
        em.create(PolicyEntity, { ...subjectColumns(input.subject), effect: input.effect, operations: input.operations, targets: input.targets, description: input.description ?? null }),
      );
      await this.bus.publish(POLICIES_CHANGED, null, em);
      return row;
    });
    await this.reload();
    return toView(saved);
  }

  async patch(id: string, body: unknown): Promise<PolicyView> {
    const input = parseBody(patchPolicySchema, body);
    const saved = await this.repo.manager.transaction(async (em) => {
      const row = await this.find(id, em.getRepository(PolicyEntity));
      const { subject, ...rest } = input;
      em.merge(PolicyEntity, row, { ...rest, ...(subject ? subjectColumns(subject) : {}) });
      const result = await em.save(row);
      await this.bus.publish(POLICIES_CHANGED, null, em);
      return result;
    });
    await this.reload();
    return toView(saved);
  }

  async remove(id: string): Promise<void> {
    await this.repo.manager.transaction(async (em) => {
      await em.remove(await this.find(id, em.getRepository(PolicyEntity)));
      await this.bus.publish(POLICIES_CHANGED, null, em);
    });
    await this.reload();
  }

  /**
   * Reads the policy set now (after any read in progress: reads are serialized). Resolves once a
   * set read after this call is in effect; rejects with the database error if that read fails,
   * while a retry with backoff continues in the background.
   */
  reload(): Promise<void> {
    const gen = ++this.requested;
    const done = new Promise<void>((resolve, reject) => this.waiters.push({ gen, resolve, reject }));
    // A fresh trigger (a change, a write) is worth trying at once rather than after the backoff.
    this.timers.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    this.kick();
    return done;
  }

  private kick(): void {
    if (this.draining || this.closed) return;
    this.draining = true;
    void this.drain();
  }

  /** Loads until the rules answer every trigger so far; one read at a time. */
  private async drain(): Promise<void> {
    try {
      while (this.applied < this.requested && !this.closed) {
        const gen = this.requested;
        let rules: PolicyRule[];
        try {
          rules = (await this.repo.find({ order: { createdAt: 'ASC' } })).map(toRule);
        } catch (error) {
          this.failed(gen, error as Error);
          return;
        }
        this.rules = rules;
        this.version++;
        this.applied = gen;
        this.attempt = 0;
        if (!this.isLoaded) this.logger.info({ policies: rules.length }, 'policies loaded');
        this.isLoaded = true;
        this.gate.set('ok');
        this.settle(gen);
      }
    } finally {
      // Same turn as the loop's last check (no await in between): a trigger is never left unserved.
      this.draining = false;
    }
  }

  private failed(gen: number, error: Error): void {
    const delay = backoffDelay(this.attempt++, RETRY_BACKOFF);
    const why = error.message.split('\n')[0].slice(0, 300);
    this.gate.set(
      'error',
      this.isLoaded ? `reloading policies failed (${why}); still enforcing the set loaded before; retrying` : `policies not loaded yet: ${why}; retrying`,
    );
    this.logger.error({ err: error, retryInMs: delay }, this.isLoaded ? 'could not reload policies' : 'could not load policies; denying every operation until they load');
    this.settle(gen, error);
    if (this.closed) return;
    this.retryTimer = this.timers.setTimeout(() => {
      this.retryTimer = undefined;
      this.kick();
    }, delay);
  }

  /** Resolves (or, with `error`, rejects) the waiters whose trigger the load for `gen` answered. */
  private settle(gen: number, error?: Error): void {
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const waiter = this.waiters[i];
      if (waiter.gen > gen) continue;
      this.waiters.splice(i, 1);
      if (error) waiter.reject(error);
      else waiter.resolve();
    }
  }

  private async find(id: string, repo: Repository<PolicyEntity> = this.repo): Promise<PolicyEntity> {
    const row = isUuid(id) ? await repo.findOneBy({ id }) : null;
    if (!row) throw new AppError(ErrorCode.NotFound, `policy "${id}" does not exist`);
    return row;
  }
}
