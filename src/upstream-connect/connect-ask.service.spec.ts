import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { ProtocolError } from '@modelcontextprotocol/server';
import type { Principal } from '../auth/principal.js';
import type { AppConfig } from '../config/config.schema.js';
import { KeyRing } from '../secrets/secret-crypto.js';
import { ConnectAsk, CONNECT_REQUEST_STATE_PREFIX, declinedConnect, isConnectRequestState } from './connect-ask.service.js';
import { ConnectLinks } from './connect-links.service.js';

const config = { http: { publicUrl: 'https://gatehouse.example' }, upstreamConnect: { linkTtlMs: 60_000, flowTtlMs: 60_000 } } as AppConfig;
const ring = new KeyRing([{ id: 'k1', key: randomBytes(32) }]);
const links = new ConnectLinks(ring, config);
const ask = new ConnectAsk(links);
const erin = { id: 'user:u-erin', userId: 'u-erin' } as Principal;
const URL_CAPS = { elicitation: { url: {} } };
const problem = { problem: 'You have not connected your account for server "linear": connect your account at …', connect: { server: 'linear', reason: 'not_connected' as const } };
const plain = () => ({ plain: true });

describe('ConnectLinks', () => {
  it('a link names its user and server, expires, and cannot be altered or moved to another server', () => {
    const link = new URL(links.linkFor('linear', 'u-erin', ['read', 'admin'], 1_000));
    assert.equal(link.origin + link.pathname, 'https://gatehouse.example/connect/linear');
    const ref = link.searchParams.get('ref')!;
    assert.deepEqual(links.read('linear', ref, 2_000), { owner: 'u-erin', expiresAt: 61_000, scopes: ['read', 'admin'] });
    assert.equal(links.read('linear', ref, 61_000), 'expired');
    assert.equal(links.read('github', ref, 2_000), 'invalid', 'bound to its server');
    const flipped = `${ref.slice(0, 20)}${ref[20] === 'A' ? 'B' : 'A'}${ref.slice(21)}`;
    assert.equal(links.read('linear', flipped, 2_000), 'invalid');
    for (const junk of [undefined, '', 'not base64!', 'a'.repeat(5000), 42]) assert.equal(links.read('linear', junk, 2_000), 'invalid');
    const other = new ConnectLinks(new KeyRing([{ id: 'k1', key: randomBytes(32) }]), config);
    assert.equal(other.read('linear', ref, 2_000), 'invalid', 'another deployment’s key');
  });
});

describe('ConnectAsk: the era’s question when a call needs the caller’s upstream account', () => {
  it('2025-11-25 client with elicitation.url: URLElicitationRequiredError (-32042) carrying a personal URL elicitation', () => {
    let thrown: unknown;
    try {
      ask.answer({ era: 'legacy', principal: erin, client: { capabilities: URL_CAPS } }, problem, plain);
    } catch (error) {
      thrown = error;
    }
    assert.ok(thrown instanceof ProtocolError);
    assert.equal(thrown.code, -32042);
    const [elicitation] = (thrown.data as { elicitations: { mode: string; url: string; message: string; elicitationId: string }[] }).elicitations;
    assert.equal(elicitation.mode, 'url');
    assert.match(elicitation.elicitationId, /^[0-9a-f-]{36}$/);
    assert.match(elicitation.message, /"linear".*connect it/);
    const ref = new URL(elicitation.url).searchParams.get('ref');
    assert.equal((links.read('linear', ref) as { owner: string }).owner, 'u-erin');
  });

  it('2026-07-28 client with elicitation.url: input_required with the URL elicitation and a requestState the retry is recognised by', () => {
    const result = ask.answer({ era: 'modern', principal: erin, client: { capabilities: URL_CAPS } }, problem, plain) as Record<string, unknown>;
    assert.equal(result.resultType, 'input_required');
    const requests = result.inputRequests as Record<string, { method: string; params: { mode: string; url: string } }>;
    assert.deepEqual(Object.keys(requests), ['connect-linear']);
    assert.equal(requests['connect-linear'].method, 'elicitation/create');
    assert.equal(requests['connect-linear'].params.mode, 'url');
    assert.match(requests['connect-linear'].params.url, /^https:\/\/gatehouse\.example\/connect\/linear\?ref=/);
    assert.ok(String(result.requestState).startsWith(CONNECT_REQUEST_STATE_PREFIX));
    assert.equal(isConnectRequestState(result.requestState), true);
    assert.equal(isConnectRequestState('a-broker-state'), false);
  });

  it('clients without URL elicitation (either era, form-only too): a tool error with the link and what to do', () => {
    for (const [era, capabilities] of [
      ['legacy', {}],
      ['modern', { elicitation: { form: {} } }],
      ['legacy', undefined],
    ] as const) {
      const result = ask.answer({ era, principal: erin, client: capabilities ? { capabilities } : undefined }, problem, plain) as unknown as { isError: boolean; content: { text: string }[] };
      assert.equal(result.isError, true);
      assert.match(result.content[0].text, /Open this link in your browser, signed in to Gatehouse as yourself, and approve: https:\/\/gatehouse\.example\/connect\/linear\?ref=\S+\nThen run this call again/);
    }
  });

  it('insufficient_scope: the link asks for the union of scopes and the message names them', () => {
    const stepUp = { problem: 'needs more', connect: { server: 'linear', reason: 'insufficient_scope' as const, scopes: ['read', 'write'] } };
    const result = ask.answer({ era: 'modern', principal: erin, client: { capabilities: URL_CAPS } }, stepUp, plain) as unknown as { inputRequests: Record<string, { params: { url: string; message: string } }> };
    const { url, message } = result.inputRequests['connect-linear'].params;
    assert.match(message, /more access.*\(read write\)/);
    assert.deepEqual((links.read('linear', new URL(url).searchParams.get('ref')) as { scopes: string[] }).scopes, ['read', 'write']);
  });

  it('nothing to ask: no connect request, or a principal without a Gatehouse user (it cannot sign in to the page)', () => {
    assert.deepEqual(ask.answer({ era: 'legacy', principal: erin, client: { capabilities: URL_CAPS } }, { problem: 'secret missing' }, plain), { plain: true });
    const keyOnly = { id: 'key:k1', userId: null } as unknown as Principal;
    assert.deepEqual(ask.answer({ era: 'legacy', principal: keyOnly, client: { capabilities: URL_CAPS } }, problem, plain), { plain: true });
  });

  it('prompts and resources (no tool result to carry a link): the -32042 error when it applies, else the plain problem', () => {
    assert.throws(() => ask.answer({ era: 'legacy', principal: erin, client: { capabilities: URL_CAPS } }, problem, plain, false), (e: unknown) => e instanceof ProtocolError && e.code === -32042);
    assert.deepEqual(ask.answer({ era: 'modern', principal: erin, client: { capabilities: URL_CAPS } }, problem, plain, false), { plain: true });
    assert.deepEqual(ask.answer({ era: 'legacy', principal: erin, client: { capabilities: {} } }, problem, plain, false), { plain: true });
  });

  it('a 2026-07-28 retry declining the connect ask gets a tool error instead of another ask; accepting (or another state) is a fresh call', () => {
    const state = `${CONNECT_REQUEST_STATE_PREFIX}abc`;
    const declined = declinedConnect({ requestState: state, inputResponses: { 'connect-linear': { action: 'decline' } } });
    assert.equal(declined?.isError, true);
    assert.match((declined?.content[0] as { text: string }).text, /did not connect your account for "linear"/);
    assert.equal(declinedConnect({ requestState: state, inputResponses: { 'connect-linear': { action: 'accept' } } }), undefined);
    assert.equal(declinedConnect({ requestState: 'broker-state', inputResponses: { 'connect-linear': { action: 'decline' } } }), undefined);
    assert.equal(declinedConnect(undefined), undefined);
  });
});
