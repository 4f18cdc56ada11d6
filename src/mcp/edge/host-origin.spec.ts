import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { configFrom } from '../../../test/support/app.js';
import { ReadinessGates } from '../../database/readiness-gates.js';
import { HostOriginCheck } from './host-origin.js';
import { McpReadiness } from './mcp-readiness.js';

const config = () => configFrom({ HTTP_ALLOWED_HOSTS: 'localhost,mcp.example.com' });

describe('the /mcp edge refusals', () => {
  it('remembers only the last fine Host/Origin pair: any other pair is checked again', () => {
    const check = new HostOriginCheck(config());
    assert.equal(check.problem('localhost:3000', undefined), undefined);
    assert.equal(check.problem('localhost:3000', undefined), undefined, 'the same pair again');
    assert.match(check.problem('localhost:3000', 'https://evil.example')!, /Origin/, 'same Host, foreign Origin');
    assert.match(check.problem('evil.example', undefined)!, /Host/, 'foreign Host after a fine one');
    assert.match(check.problem(undefined, undefined)!, /Host/, 'no Host');
    assert.equal(check.problem('localhost:3000', undefined), undefined, 'the fine pair still fine');
    assert.equal(check.problem('mcp.example.com', 'https://mcp.example.com'), undefined);
    assert.match(check.problem('mcp.example.com', 'https://evil.example')!, /Origin/, 'the fine Host with another Origin');
    assert.match(check.problem('evil.example', 'https://mcp.example.com')!, /Host/, 'the fine Origin with another Host');
  });

  it('is ready only while every registered /mcp gate is ok', () => {
    const gates = new ReadinessGates();
    const readiness = new McpReadiness(gates);
    assert.equal(readiness.notReady(), undefined, 'no gates');
    const policies = gates.register('policies');
    const other = gates.register('changeBus');
    assert.match(readiness.notReady()!, /policies: pending/);
    policies.set('ok');
    assert.equal(gates.allOk(), false, 'another gate is pending');
    assert.equal(readiness.notReady(), undefined, 'a gate /mcp does not wait for');
    other.set('ok');
    assert.equal(gates.allOk(), true);
    assert.equal(readiness.notReady(), undefined);
    policies.set('error', 'database down');
    assert.match(readiness.notReady()!, /policies: database down/);
  });
});
