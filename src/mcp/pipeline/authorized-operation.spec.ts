import type { UpstreamConnectionsService } from '../../upstream-oauth/upstream-connections.service.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/server';
import { ANONYMOUS_PRINCIPAL } from '../../auth/principal.js';
import type { PoliciesService } from '../../policies/policies.service.js';
import type { Catalog } from '../../upstreams/catalog.js';
import { assertAuthorized, authorize, POLICY_DENIED, type AuthorizedOperation } from './authorized-operation.js';
import type { ClassifiedOperation } from './mcp-operation.js';
import type { SecretsService } from '../../secrets/secrets.service.js';
import type { UpstreamServersService } from '../../upstreams/upstream-servers.service.js';
import { NO_INJECT, routeCall } from '../upstream-route.js';
import type { UpstreamConnection } from '../../upstreams/upstream-connection.js';
import { UpstreamServerEntity } from '../../upstreams/upstream-server.entity.js';

const op = (): ClassifiedOperation<'tools/call'> => ({
  kind: 'tools/call',
  scope: '',
  principal: ANONYMOUS_PRINCIPAL,
  params: { name: 'gh__x' },
  era: 'legacy',
  path: 'fast',
  catalog: {} as Catalog,
  target: { server: 'gh', name: 'x' },
  policy: { operation: 'tools/call', name: 'gh__x' },
});

describe('authorize', () => {
  it('returns the only value routing accepts when the policy allows, and throws -32003 naming the policy when not', () => {
    const allow = { decide: () => ({ allowed: true, by: 'default' }), decideFor: () => ({ allowed: true, by: 'default' }) } as unknown as PoliciesService;
    const authorized = authorize(allow, op());
    assert.doesNotThrow(() => assertAuthorized(authorized));
    const deny = { decideFor: () => ({ allowed: false, by: { id: 'p-1', description: 'no' } }) } as unknown as PoliciesService;
    assert.throws(
      () => authorize(deny, op()),
      (e: unknown) => e instanceof ProtocolError && e.code === POLICY_DENIED && /denied by policy p-1 \(no\)/.test(e.message) && (e.data as { policyId: string }).policyId === 'p-1',
    );
  });

  it('a forged operation does not type-check, and a cast one is refused at run time', () => {
    // The build fails if this ever type-checks (unused @ts-expect-error): only authorize() makes one.
    // @ts-expect-error an object literal is not an AuthorizedOperation (ES private field)
    const forged: AuthorizedOperation = { operation: op(), granted: true };
    assert.ok(forged);
    assert.throws(() => assertAuthorized({ operation: op(), granted: true }), /without authorization/);
    // Routing an upstream call takes only an authorized operation.
    const upstreams = { connection: () => assert.fail('must not be reached') } as unknown as UpstreamServersService;
    assert.throws(() => routeCall({ upstreams, secrets: {} as SecretsService, connections: {} as UpstreamConnectionsService }, forged), /without authorization/);
  });
});

describe('routeCall', () => {
  const allow = { decideFor: () => ({ allowed: true, by: 'default' }) } as unknown as PoliciesService;
  const plain = Object.assign(new UpstreamServerEntity(), { name: 'gh', transport: 'streamable_http' as const, env: {}, headers: {}, inject: {}, oauth: null });
  const services = (connection: object | undefined) => ({
    upstreams: { connection: () => connection, template: () => plain } as unknown as UpstreamServersService,
    secrets: { forCaller: () => assert.fail('a plain server reads no secrets') } as unknown as SecretsService,
    connections: {} as UpstreamConnectionsService,
  });

  it('routes a plain server to its shared connection without a promise: one frozen route per connection, nothing injected, nothing to release', () => {
    const connection = {} as UpstreamConnection;
    const first = routeCall(services(connection), authorize(allow, op()));
    assert.ok(!(first instanceof Promise), 'known at once (was: a promise per call)');
    assert.ok(first && 'connection' in first);
    assert.equal(first.connection, connection);
    assert.equal(first.inject, NO_INJECT);
    assert.deepEqual(first.inject, {});
    assert.equal(first.release(), undefined);
    assert.ok(Object.isFrozen(first), 'shared by every call: no consumer may change it');
    assert.equal(routeCall(services(connection), authorize(allow, op())), first, 'the same object for the next call');
    const other = routeCall(services({}), authorize(allow, op()));
    assert.notEqual(other, first, 'another connection has its own route');
  });

  it('a server that is gone has no route (undefined, not a promise)', () => {
    assert.equal(routeCall(services(undefined), authorize(allow, op())), undefined);
  });
});
