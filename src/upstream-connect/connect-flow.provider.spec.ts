import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { auth, type FetchLike, type OAuthClientInformationMixed } from '@modelcontextprotocol/client';
import { ConnectFlowProvider, type FlowState } from './connect-flow.provider.js';
import type { RegisteredClients } from './registered-clients.store.js';

const MCP = 'https://mcp.example/mcp';
const AS = 'https://auth.example';
const CALLBACK = 'https://gatehouse.example/upstream-oauth/callback';
const CIMD = 'https://gatehouse.example/upstream-oauth/client.json';

/**
 * A remote MCP server and its authorization server, as JSON over a fake fetch (they are not on
 * this machine): RFC 9728 metadata naming the AS, RFC 8414 metadata, RFC 7591 registration and a
 * token endpoint. `requests` records what was asked.
 */
function remote(metadata: Record<string, unknown> = {}) {
  const requests: { url: string; method: string; body?: string }[] = [];
  const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json' } });
  const fetchFn: FetchLike = (input, init) => {
    const url = new URL(String(input));
    requests.push({ url: url.href, method: init?.method ?? 'GET', body: typeof init?.body === 'string' ? init.body : init?.body instanceof URLSearchParams ? init.body.toString() : undefined });
    if (url.pathname === '/.well-known/oauth-protected-resource/mcp') return Promise.resolve(json({ resource: MCP, authorization_servers: [AS], scopes_supported: ['read'] }));
    if (url.origin === AS && url.pathname === '/.well-known/oauth-authorization-server') {
      return Promise.resolve(
        json({
          issuer: AS,
          authorization_endpoint: `${AS}/authorize`,
          token_endpoint: `${AS}/token`,
          registration_endpoint: `${AS}/register`,
          response_types_supported: ['code'],
          code_challenge_methods_supported: ['S256'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'none'],
          ...metadata,
        }),
      );
    }
    if (url.href === `${AS}/register`) return Promise.resolve(json({ client_id: 'dcr-client', client_secret: 'dcr-secret', redirect_uris: [CALLBACK], token_endpoint_auth_method: 'client_secret_basic' }, 201));
    if (url.href === `${AS}/token`) return Promise.resolve(json({ access_token: 'at-1', token_type: 'Bearer', expires_in: 60, refresh_token: 'rt-1', scope: 'read' }));
    return Promise.resolve(new Response('not found', { status: 404 }));
  };
  return { fetchFn, requests };
}

/** Registrations kept in memory (the store's contract), counting saves. */
function registrations(): RegisteredClients & { saved: number } {
  const rows = new Map<string, OAuthClientInformationMixed>();
  const store = {
    saved: 0,
    get(issuer: string) {
      return Promise.resolve(rows.get(issuer));
    },
    save(issuer: string, _redirect: string, info: OAuthClientInformationMixed) {
      this.saved++;
      rows.set(issuer, info);
      return Promise.resolve();
    },
    forget(issuer: string) {
      rows.delete(issuer);
      return Promise.resolve();
    },
  };
  return store as unknown as RegisteredClients & { saved: number };
}

describe("ConnectFlowProvider with the SDK's auth(): the spec's order of client registration", () => {
  it('an AS advertising client_id_metadata_document_supported: Gatehouse’s metadata document URL is the client id (no registration)', async () => {
    const { fetchFn, requests } = remote({ client_id_metadata_document_supported: true });
    const store = registrations();
    const flow: FlowState = { state: 'state-1' };
    const provider = new ConnectFlowProvider(flow, { redirectUrl: CALLBACK, clientMetadataUrl: CIMD, registrations: store });
    assert.equal(await auth(provider, { serverUrl: MCP, fetchFn }), 'REDIRECT');
    const url = provider.authorizationUrl!;
    assert.equal(url.origin + url.pathname, `${AS}/authorize`);
    assert.equal(url.searchParams.get('client_id'), CIMD);
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('resource'), MCP);
    assert.equal(url.searchParams.get('state'), 'state-1');
    assert.equal(url.searchParams.get('redirect_uri'), CALLBACK);
    assert.deepEqual(flow.client, { kind: 'metadata_document', clientId: CIMD, issuer: AS });
    assert.ok(flow.codeVerifier && flow.discovery?.authorizationServerMetadata);
    assert.equal(store.saved, 0);
    assert.equal(requests.filter((r) => r.url === `${AS}/register`).length, 0);
  });

  it('an AS without metadata documents: dynamic registration (RFC 7591), kept per issuer and reused', async () => {
    const { fetchFn, requests } = remote();
    const store = registrations();
    for (const state of ['s1', 's2']) {
      const flow: FlowState = { state };
      const provider = new ConnectFlowProvider(flow, { redirectUrl: CALLBACK, clientMetadataUrl: CIMD, registrations: store });
      await auth(provider, { serverUrl: MCP, fetchFn });
      assert.equal(provider.authorizationUrl!.searchParams.get('client_id'), 'dcr-client');
      assert.equal(flow.client?.kind, 'dynamic');
    }
    assert.equal(requests.filter((r) => r.url === `${AS}/register`).length, 1, 'registered once');
    const body = JSON.parse(requests.find((r) => r.url === `${AS}/register`)!.body!) as Record<string, unknown>;
    assert.deepEqual(body.redirect_uris, [CALLBACK]);
    assert.deepEqual(body.grant_types, ['authorization_code', 'refresh_token']);
  });

  it('a pre-registered client wins over both; the callback leg checks iss (RFC 9207) and redeems the code with the verifier', async () => {
    const { fetchFn, requests } = remote({ client_id_metadata_document_supported: true, authorization_response_iss_parameter_supported: true });
    const settings = { redirectUrl: CALLBACK, clientMetadataUrl: CIMD, preRegistered: { clientId: 'admin-client', clientSecret: 'admin-secret' }, registrations: registrations() };
    const flow: FlowState = { state: 's' };
    const first = new ConnectFlowProvider(flow, settings);
    await auth(first, { serverUrl: MCP, fetchFn });
    assert.equal(first.authorizationUrl!.searchParams.get('client_id'), 'admin-client');

    // The callback on another replica: a new provider over the persisted flow state.
    const mixedUp = new ConnectFlowProvider({ ...flow }, settings);
    await assert.rejects(auth(mixedUp, { serverUrl: MCP, authorizationCode: 'code-1', iss: 'https://evil.example', fetchFn }), /issuer|iss/i);
    assert.equal(mixedUp.obtained, undefined, 'no token for a mixed-up answer');
    const missing = new ConnectFlowProvider({ ...flow }, settings);
    await assert.rejects(auth(missing, { serverUrl: MCP, authorizationCode: 'code-1', fetchFn }), /iss/i, 'iss is required when advertised');

    const callback = new ConnectFlowProvider({ ...flow }, settings);
    assert.equal(await auth(callback, { serverUrl: MCP, authorizationCode: 'code-1', iss: AS, fetchFn }), 'AUTHORIZED');
    assert.equal(callback.obtained?.access_token, 'at-1');
    const token = new URLSearchParams(requests.filter((r) => r.url === `${AS}/token`).at(-1)!.body);
    assert.equal(token.get('code'), 'code-1');
    assert.equal(token.get('code_verifier'), flow.codeVerifier);
    assert.equal(token.get('resource'), MCP);
  });
});
