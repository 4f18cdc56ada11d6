import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/server';
import type { AppConfig } from '../../config/config.schema.js';
import type { UpstreamCaller } from '../../upstreams/upstream-callers.js';
import { InputRequiredBroker, type InputRequiredResult } from './server-requests.js';

const TTL = 1_000;
const config = { upstreams: { inputRequiredTtlMs: TTL } } as AppConfig;
const client = { capabilities: { sampling: {}, elicitation: {} } };

/** An upstream call that asks `asks` of its caller in turn and returns what it was told. */
function upstream(asks: string[]): { invoke: (caller: UpstreamCaller, signal: AbortSignal) => Promise<Record<string, unknown>>; signal: () => AbortSignal | undefined; errors: unknown[] } {
  let seen: AbortSignal | undefined;
  const errors: unknown[] = [];
  return {
    signal: () => seen,
    errors,
    invoke: async (caller, signal) => {
      seen = signal;
      const answers: unknown[] = [];
      for (const method of asks) {
        try {
          answers.push(await caller.request(method as 'sampling/createMessage', { n: answers.length }, signal));
        } catch (error) {
          errors.push(error);
          throw error;
        }
      }
      return { content: [{ type: 'text', text: JSON.stringify(answers) }] };
    },
  };
}

describe('InputRequiredBroker (MRTR bridge for 2026-07-28 clients)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('answers input_required for each upstream request and completes the call with the answers of the retries', async () => {
    const broker = new InputRequiredBroker(config);
    const up = upstream(['sampling/createMessage', 'elicitation/create']);
    const first = (await broker.start('alice', 's__t', client, undefined, up.invoke)) as InputRequiredResult;
    assert.equal(first.resultType, 'input_required');
    const [key1] = Object.keys(first.inputRequests);
    assert.equal(first.inputRequests[key1].method, 'sampling/createMessage');
    const second = (await broker.resume('alice', 's__t', { requestState: first.requestState, inputResponses: { [key1]: { text: 'one' } } }, undefined)) as InputRequiredResult;
    assert.equal(second.resultType, 'input_required');
    const [key2] = Object.keys(second.inputRequests);
    assert.equal(second.inputRequests[key2].method, 'elicitation/create');
    const done = await broker.resume('alice', 's__t', { requestState: second.requestState, inputResponses: { [key2]: { action: 'decline' } } }, undefined);
    assert.deepEqual(done, { content: [{ type: 'text', text: '[{"text":"one"},{"action":"decline"}]' }] });
  });

  it('a retry without the answer asks again; the state of another principal or tool, or a forged one, is -32602', async () => {
    const broker = new InputRequiredBroker(config);
    const up = upstream(['sampling/createMessage']);
    const first = (await broker.start('alice', 's__t', client, undefined, up.invoke)) as InputRequiredResult;
    await assert.rejects(broker.resume('mallory', 's__t', { requestState: first.requestState }, undefined), (e: ProtocolError) => e.code === -32602);
    await assert.rejects(broker.resume('alice', 's__other', { requestState: first.requestState }, undefined), (e: ProtocolError) => e.code === -32602);
    const again = (await broker.resume('alice', 's__t', { requestState: first.requestState, inputResponses: {} }, undefined)) as InputRequiredResult;
    assert.deepEqual(Object.keys(again.inputRequests), Object.keys(first.inputRequests));
    await assert.rejects(broker.resume('alice', 's__t', { requestState: 'forged' }, undefined), (e: ProtocolError) => e.code === -32602);
  });

  it('a client that never retries: after the TTL the upstream request is refused, the call cancelled, and a late retry is -32602', async () => {
    const broker = new InputRequiredBroker(config);
    const up = upstream(['sampling/createMessage']);
    const first = (await broker.start('alice', 's__t', client, undefined, up.invoke)) as InputRequiredResult;
    mock.timers.tick(TTL - 1);
    assert.equal(up.errors.length, 0);
    mock.timers.tick(1);
    await Promise.resolve();
    assert.equal(up.errors.length, 1);
    assert.match((up.errors[0] as Error).message, /did not answer in time/);
    assert.equal(up.signal()?.aborted, true);
    await assert.rejects(broker.resume('alice', 's__t', { requestState: first.requestState, inputResponses: {} }, undefined), (e: ProtocolError) => e.code === -32602);
  });

  it('a call that finishes without asking returns its result directly', async () => {
    const broker = new InputRequiredBroker(config);
    const result = await broker.start('alice', 's__t', client, undefined, () => Promise.resolve({ content: [] }));
    assert.deepEqual(result, { content: [] });
  });

  it('a call that fails after an answer reports its error on the retry', async () => {
    const broker = new InputRequiredBroker(config);
    const first = (await broker.start('alice', 's__t', client, undefined, async (caller, signal) => {
      await caller.request('roots/list', undefined, signal);
      throw new ProtocolError(-32603, 'upstream broke');
    })) as InputRequiredResult;
    const [key] = Object.keys(first.inputRequests);
    await assert.rejects(broker.resume('alice', 's__t', { requestState: first.requestState, inputResponses: { [key]: { roots: [] } } }, undefined), /upstream broke/);
  });
});
