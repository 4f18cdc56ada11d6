import type { ConnectAsk } from '../../upstream-connect/connect-ask.service.js';
import type { UpstreamConnectionsService } from '../../upstream-oauth/upstream-connections.service.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DiscoveryService } from '@nestjs/core';
import { ProtocolError } from '@modelcontextprotocol/server';
import type { PinoLogger } from 'nestjs-pino';
import { ANONYMOUS_PRINCIPAL } from '../../auth/principal.js';
import type { PoliciesService } from '../../policies/policies.service.js';
import type { SecretsService } from '../../secrets/secrets.service.js';
import { buildCatalog } from '../../upstreams/catalog.js';
import { UpstreamServerEntity } from '../../upstreams/upstream-server.entity.js';
import type { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import type { McpOperationHook } from './mcp-operation-hooks.js';
import type { ClientRequests, InputRequiredBroker } from './server-requests.js';
import type { SessionSubscriptions } from './resource-subscriptions.js';
import type { LogLevels } from './log-levels.js';
import { McpOperationPipeline, PRESERIALIZED, type Preserialized } from './mcp-operation-pipeline.js';
import type { McpOperationRequest } from './mcp-operation.js';

const catalog = buildCatalog([{ server: 'gh', tools: [{ name: 'x', inputSchema: { type: 'object' } }], prompts: [], resources: [], resourceTemplates: [], toolFilter: {} }], 'aggregate');
const warnings: unknown[] = [];

/** A pipeline over fakes: one catalog, policies that allow everything, the given hooks as discovered providers. */
function pipelineWith(hooks: { hook: McpOperationHook; order?: number }[], awaitingCallerListing: string[] = []): McpOperationPipeline {
  const upstreams = {
    catalog: () => catalog,
    connection: () => undefined,
    template: () => undefined,
    stillStarting: () => Promise.resolve([]),
    awaitingCallerListing: () => awaitingCallerListing,
  } as unknown as UpstreamServersService;
  const policies = {
    decide: () => ({ allowed: true, by: 'default' }),
    decideFor: () => ({ allowed: true, by: 'default' }),
    view: (c: typeof catalog) => ({ version: 0, tools: c.tools, toolsJson: c.toolsJson, prompts: [], resources: [] }),
  } as unknown as PoliciesService;
  const wrappers = hooks.map((h) => ({ instance: h.hook, order: h.order }));
  const discovery = {
    getProviders: () => wrappers,
    getMetadataByDecorator: (_d: unknown, w: { order?: number }) => (w.order === undefined ? undefined : { order: w.order }),
  } as unknown as DiscoveryService;
  const logger = { setContext: () => undefined, warn: (o: unknown) => warnings.push(o) } as unknown as PinoLogger;
  const pipeline = new McpOperationPipeline(upstreams, policies, {} as SecretsService, discovery, logger, {} as ClientRequests, {} as InputRequiredBroker, {} as LogLevels, {} as SessionSubscriptions, {} as UpstreamConnectionsService, {} as ConnectAsk);
  pipeline.onModuleInit();
  return pipeline;
}

const ping = (): McpOperationRequest<'ping'> => ({ kind: 'ping', scope: '', principal: ANONYMOUS_PRINCIPAL, params: {}, era: 'modern', path: 'fast' });

describe('McpOperationPipeline hooks', () => {
  it('with no hook, an operation never enters the hooked path', async () => {
    const pipeline = pipelineWith([]);
    (pipeline as unknown as { hooked: () => never }).hooked = () => assert.fail('hooked path entered');
    assert.deepEqual(await pipeline.run(ping()), {});
  });

  it('runs discovered hooks by order: beforeCall in turn (awaiting only promises), afterCall with outcome and duration', async () => {
    const calls: string[] = [];
    const hook = (name: string): McpOperationHook => ({
      beforeCall: (op) => void calls.push(`${name}.before ${op.operation.kind}`),
      afterCall: (op, outcome, ms) => void calls.push(`${name}.after ${op.operation.kind} ${outcome.ok} ${ms >= 0}`),
    });
    const pipeline = pipelineWith([
      { hook: hook('metrics'), order: 30 },
      { hook: hook('limiter'), order: 10 },
      { hook: hook('audit'), order: 20 },
    ]);
    await pipeline.run(ping());
    assert.deepEqual(calls, ['limiter.before ping', 'audit.before ping', 'metrics.before ping', 'limiter.after ping true true', 'audit.after ping true true', 'metrics.after ping true true']);
  });

  it('an (async) beforeCall refusal is the client’s error; every afterCall sees it; a throwing afterCall is logged, not fatal', async () => {
    const outcomes: unknown[] = [];
    let reached = false;
    const pipeline = pipelineWith([
      { hook: { beforeCall: () => Promise.reject(new ProtocolError(-32029, 'slow down')) }, order: 1 },
      { hook: { beforeCall: () => void (reached = true), afterCall: (_op, outcome) => void outcomes.push(outcome) }, order: 2 },
      {
        hook: {
          afterCall: () => {
            throw new Error('metrics broke');
          },
        },
        order: 3,
      },
    ]);
    await assert.rejects(pipeline.run(ping()), (e: unknown) => e instanceof ProtocolError && e.code === -32029);
    assert.equal(reached, false, 'later hooks and the call do not run after a refusal');
    assert.deepEqual(outcomes, [{ ok: false, error: { code: -32029, message: 'slow down' } }]);
    assert.equal(warnings.length, 1);
  });

  it('with beforeCall hooks only: each in order, a returned promise awaited before the next and the call; a sync or async refusal is the client’s error and stops the rest', async () => {
    const calls: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pipeline = pipelineWith([
      { hook: { beforeCall: () => void calls.push('sync') }, order: 1 },
      { hook: { beforeCall: () => (calls.push('async'), gate.then(() => void calls.push('async done'))) }, order: 2 },
      { hook: { beforeCall: () => void calls.push('last') }, order: 3 },
    ]);
    const running = pipeline.run(ping());
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(calls, ['sync', 'async'], 'later hooks wait for the pending one');
    release();
    assert.deepEqual(await running, {});
    assert.deepEqual(calls, ['sync', 'async', 'async done', 'last']);

    let reached = false;
    const thrown = new ProtocolError(-32029, 'slow down');
    const refusing = pipelineWith([
      {
        hook: {
          beforeCall: () => {
            throw thrown;
          },
        },
        order: 1,
      },
      { hook: { beforeCall: () => void (reached = true) }, order: 2 },
    ]);
    const refused = refusing.run(ping());
    assert.ok(refused instanceof Promise, 'a synchronous throw is a rejection, not an exception');
    await assert.rejects(refused, (e: unknown) => e === thrown);
    assert.equal(reached, false);
  });

  it('a hook with afterCall added at run time gets the outcome; removed, it no longer does', async () => {
    const pipeline = pipelineWith([{ hook: { beforeCall: () => undefined } }]);
    const outcomes: unknown[] = [];
    const remove = pipeline.addHook({ afterCall: (_op, outcome) => void outcomes.push(outcome.ok) });
    await pipeline.run(ping());
    assert.deepEqual(outcomes, [true]);
    remove();
    await pipeline.run(ping());
    assert.deepEqual(outcomes, [true]);
  });

  it('onRefused sees what never got authorized (unknown tool), with the error the client gets', async () => {
    const refused: unknown[] = [];
    const pipeline = pipelineWith([{ hook: { onRefused: (request, error) => void refused.push([request.kind, error.code]) } }]);
    const call: McpOperationRequest<'tools/call'> = { kind: 'tools/call', scope: '', principal: ANONYMOUS_PRINCIPAL, params: { name: 'gh__nope' }, era: 'legacy', path: 'sdk' };
    await assert.rejects(pipeline.run(call), /Unknown tool "gh__nope"/);
    assert.deepEqual(refused, [['tools/call', -32602]]);
  });

  it('a tool of a per-user server nobody has listed yet is classified by its prefix (the route then asks to connect); other unknown names stay unknown', () => {
    const pipeline = pipelineWith([], ['linear']);
    const call = (name: string, scope = ''): McpOperationRequest<'tools/call'> => ({ kind: 'tools/call', scope, principal: ANONYMOUS_PRINCIPAL, params: { name }, era: 'legacy', path: 'sdk' });
    assert.deepEqual(pipeline.classify(call('linear__create_issue')).target, { server: 'linear', name: 'create_issue' });
    assert.deepEqual(pipeline.classify(call('gh__x')).target, { server: 'gh', name: 'x' }, 'listed tools resolve as before');
    assert.throws(() => pipeline.classify(call('other__tool')), /Unknown tool "other__tool"/);
    assert.throws(() => pipeline.classify(call('linear__')), /Unknown tool/);
  });

  it('a whole tools/list carries one frozen preserialized value per tools array (the key of the edge’s cached answer bytes)', async () => {
    const pipeline = pipelineWith([]);
    const list = (): McpOperationRequest<'tools/list'> => ({ kind: 'tools/list', scope: '', principal: ANONYMOUS_PRINCIPAL, params: {}, era: 'legacy', path: 'fast' });
    const first = (await pipeline.run(list())) as Record<string, unknown> & Preserialized;
    const second = (await pipeline.run(list())) as Record<string, unknown> & Preserialized;
    assert.notEqual(first, second, 'a result per request');
    assert.equal(first[PRESERIALIZED], second[PRESERIALIZED], 'the same preserialized value for the same list');
    assert.ok(Object.isFrozen(first[PRESERIALIZED]));
    assert.deepEqual(first[PRESERIALIZED], { field: 'tools', json: catalog.toolsJson });
    assert.equal(first.tools, catalog.tools);
  });

  it('echoes at most 200 characters of an unknown name back to the client', async () => {
    const pipeline = pipelineWith([]);
    const long = `gh__${'x'.repeat(200_000)}`;
    const call: McpOperationRequest<'tools/call'> = { kind: 'tools/call', scope: '', principal: ANONYMOUS_PRINCIPAL, params: { name: long }, era: 'legacy', path: 'sdk' };
    await assert.rejects(pipeline.run(call), (e: unknown) => e instanceof ProtocolError && e.message.length < 400 && e.message.includes('(200004 characters)'));
  });
});

describe('McpOperationPipeline tools/call routing', () => {
  const plain = Object.assign(new UpstreamServerEntity(), { name: 'gh', transport: 'streamable_http' as const, env: {}, headers: {}, inject: {}, oauth: null });
  const perCaller = Object.assign(new UpstreamServerEntity(), { ...plain, headers: { authorization: 'Bearer ${secret:TOKEN}' } });
  const connection = (connected = true) => ({
    readyNow: () => (connected ? {} : undefined),
    getStatus: () => ({ state: 'error', lastError: 'boom' }),
    server: { timeoutMs: 1_000 },
    maskAlso: () => undefined,
    callTool: (params: { name: string }) => Promise.resolve({ content: [{ type: 'text', text: `called ${params.name}` }] }),
  });
  const toolPipeline = (upstreams: Record<string, unknown>, secrets: object = {}) => {
    const policies = { decideFor: () => ({ allowed: true, by: 'default' }) } as unknown as PoliciesService;
    const discovery = { getProviders: () => [], getMetadataByDecorator: () => undefined } as unknown as DiscoveryService;
    const logger = { setContext: () => undefined, warn: () => undefined } as unknown as PinoLogger;
    const services = { catalog: () => catalog, stillStarting: () => Promise.resolve([]), awaitingCallerListing: () => [], ...upstreams } as unknown as UpstreamServersService;
    const pipeline = new McpOperationPipeline(services, policies, secrets as SecretsService, discovery, logger, {} as ClientRequests, {} as InputRequiredBroker, {} as LogLevels, {} as SessionSubscriptions, {} as UpstreamConnectionsService, {} as ConnectAsk);
    pipeline.onModuleInit();
    return pipeline;
  };
  const call = (): McpOperationRequest<'tools/call'> => ({ kind: 'tools/call', scope: '', principal: ANONYMOUS_PRINCIPAL, params: { name: 'gh__x', arguments: {} }, era: 'legacy', path: 'fast' });

  it('a plain server’s connected upstream is called straight away (no OAuth-retry or release layer)', async () => {
    const pipeline = toolPipeline({ connection: () => connection(), template: () => plain });
    (pipeline as unknown as { callRetrying: () => never }).callRetrying = () => assert.fail('the slow path entered');
    assert.deepEqual(await pipeline.run(call()), { content: [{ type: 'text', text: 'called x' }] });
  });

  it('a per-caller route is made once per call and released once, through the slow path', async () => {
    let pooled = 0;
    let released = 0;
    const secrets = { forCaller: () => Promise.resolve({ values: new Map([['TOKEN', 't']]), unreadable: new Map() }), howToSet: () => '' };
    const pipeline = toolPipeline(
      {
        connection: () => connection(),
        template: () => perCaller,
        pooled: () => {
          pooled++;
          return Promise.resolve({ connection: connection(), release: () => void released++ });
        },
      },
      secrets,
    );
    assert.deepEqual(await pipeline.run(call()), { content: [{ type: 'text', text: 'called x' }] });
    assert.deepEqual([pooled, released], [1, 1]);
  });

  it('a parked (idle) server is woken once, on the slow path, and the call answered', async () => {
    let woken = 0;
    const parked = {
      ...connection(),
      state: 'idle',
      // Like UpstreamConnection.readyNow: the first call starts waking it (state leaves idle); asked again meanwhile, it has no client yet.
      readyNow() {
        if (this.state !== 'idle') return undefined;
        woken++;
        this.state = 'connecting';
        return Promise.resolve({});
      },
    };
    const pipeline = toolPipeline({ connection: () => parked, template: () => plain });
    assert.deepEqual(await pipeline.run(call()), { content: [{ type: 'text', text: 'called x' }] });
    assert.equal(woken, 1);
  });

  it('an upstream that is not connected is an isError result naming it, on either path', async () => {
    const pipeline = toolPipeline({ connection: () => connection(false), template: () => plain });
    assert.deepEqual(await pipeline.run(call()), { isError: true, content: [{ type: 'text', text: 'Upstream MCP server "gh" failed: boom' }] });
  });
});
