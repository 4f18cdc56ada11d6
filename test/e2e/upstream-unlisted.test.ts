import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { CONNECT_TEST_PASSWORD, elicitationOf, Jar } from '../support/connect-jar.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { hsToken } from '../support/identity.js';
import { startOAuthUpstream, type OAuthUpstream } from '../support/oauth-upstream.js';
import { toolText } from '../support/upstreams.js';

const SECRET = 'upstream-unlisted-jwt-secret-0123456789abcdef';
const ADMIN_KEY = 'static-admin-key-for-upstream-unlisted-0123456789';

/**
 * Issue 14: a server with `oauth: { mode: "user" }` is visible to users who have not connected
 * their account — as its connect tool while no catalog of it is known, then as the last catalog
 * any caller listed (stored for every replica).
 */
describe('what users who have not connected see of a per-user OAuth server (issue 14)', () => {
  let db: TestDatabase;
  let balancer: Balancer;
  let a: TestApp;
  let b: TestApp | undefined;
  let upstream: OAuthUpstream;
  const env = () => ({
    PUBLIC_URL: balancer.url,
    MCP_AUTH_STRATEGY: 'bearer,api_key',
    MCP_JWT_SECRET: SECRET,
    MCP_API_KEYS: ADMIN_KEY,
    GATEHOUSE_UPSTREAM_OAUTH_FETCH_ALLOW_PRIVATE: 'true',
  });
  const admin = (app: TestApp, method: string, path: string, body?: unknown) =>
    fetch(`${app.url}${path}`, { method, headers: { 'x-api-key': ADMIN_KEY, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }, body: body === undefined ? undefined : JSON.stringify(body) });

  /** An SDK v2 client as `username` on `path`: `legacy` (2025-11-25) or `auto` (2026-07-28), declaring URL elicitation. */
  async function mcpClient(username: string, mode: 'legacy' | 'auto', path = '/mcp', onUrl?: (url: string) => Promise<'accept' | 'decline'>): Promise<Client> {
    const client = new Client({ name: `unlisted-${mode}`, version: '1' }, { capabilities: { elicitation: { url: {} } }, versionNegotiation: { mode } });
    if (onUrl) client.setRequestHandler('elicitation/create', async (request) => ({ action: await onUrl((request.params as { url: string }).url) }));
    const token = await hsToken(SECRET, { sub: username, name: username }, { issuer: 'urn:gatehouse:local' });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${balancer.url}${path}`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    return client;
  }

  /** Connects `username`'s account through `link` without a browser (sign in, Connect, the AS approves, callback). */
  async function connect(link: string, username: string, login: string): Promise<void> {
    const jar = new Jar();
    await jar.signIn(balancer.url, username);
    upstream.nextLogin = login;
    const callback = await jar.authorize(await jar.startConnect(link), balancer.url);
    assert.equal((await jar.request('GET', callback.href)).status, 200);
  }

  /** Tool names the server lists now (a 2026-07-28 client would otherwise serve its cached list). */
  const names = async (client: Client) => (await client.listTools(undefined, { cacheMode: 'refresh' })).tools.map((t) => t.name).sort();

  before(async () => {
    db = await createTestDatabase();
    balancer = await Balancer.start();
    upstream = await startOAuthUpstream({ redirectUris: [`${balancer.url}/upstream-oauth/callback`] });
    a = await startTestApp(db.url, env());
    balancer.pointAt(a.url);
    for (const username of ['erin', 'frank', 'gina']) {
      const res = await admin(a, 'POST', '/api/v1/local-accounts', { username, password: CONNECT_TEST_PASSWORD });
      assert.equal(res.status, 201, await res.clone().text());
    }
    const res = await admin(a, 'POST', '/api/v1/servers', {
      name: 'acme',
      transport: 'streamable_http',
      url: upstream.mcpUrl,
      oauth: { mode: 'user', scopes: ['read'], clientId: upstream.clientId, clientSecret: upstream.clientSecret },
    });
    assert.equal(res.status, 201, await res.text());
  });

  after(async () => {
    await Promise.all([a?.shutdown('test done'), b?.shutdown('test done')]);
    await upstream?.close();
    await balancer?.close();
    await db?.drop();
  });

  it('a fresh user on a fresh gateway sees acme__connect; calling it asks to connect (2025-11-25: -32042), on /mcp and /mcp/acme', async () => {
    const erin = await mcpClient('erin', 'legacy');
    const single = await mcpClient('erin', 'legacy', '/mcp/acme');
    try {
      const { tools } = await erin.listTools();
      const tool = tools.find((t) => t.name === 'acme__connect');
      assert.ok(tool, `acme__connect is listed (got ${tools.map((t) => t.name).join(', ')})`);
      assert.match(tool.description ?? '', /Connect your acme account to use its tools/);
      assert.deepEqual(tool.inputSchema, { type: 'object', properties: {} });
      assert.deepEqual(await names(single), ['connect']);

      const elicitation = elicitationOf(await erin.callTool({ name: 'acme__connect', arguments: {} }).then(() => assert.fail('acme__connect should ask to connect'), (e: unknown) => e));
      assert.match(elicitation.url, new RegExp(`^${balancer.url}/connect/acme\\?ref=[A-Za-z0-9_-]+$`));
      assert.match(elicitation.message, /acme/);
      elicitationOf(await single.callTool({ name: 'connect', arguments: {} }).then(() => assert.fail('connect should ask to connect'), (e: unknown) => e));
      assert.equal(upstream.seen.filter((s) => s.sub !== null).length, 0, 'nothing reached the upstream with a token');
    } finally {
      await erin.close();
      await single.close();
    }
  });

  it('2026-07-28: calling acme__connect gets input_required with the URL; after connecting, the retry says it is connected, the real tools appear and open sessions are told', async () => {
    const watcher = await mcpClient('gina', 'legacy');
    let told = 0;
    watcher.setNotificationHandler('notifications/tools/list_changed', () => void told++);
    const asked: string[] = [];
    let toldBeforeRetry = 0;
    const frank = await mcpClient('frank', 'auto', '/mcp', async (url) => {
      asked.push(url);
      await connect(url, 'frank', 'frank-at-acme');
      // The callback alone lists the server through frank's new connection: sessions are told before any retry.
      for (let i = 0; i < 50 && told === 0; i++) await new Promise((r) => setTimeout(r, 100));
      toldBeforeRetry = told;
      return 'accept';
    });
    try {
      assert.ok((await names(frank)).includes('acme__connect'));
      const result = await frank.callTool({ name: 'acme__connect', arguments: {} });
      assert.equal(asked.length, 1, 'asked once, through input_required');
      assert.match(asked[0], new RegExp(`^${balancer.url}/connect/acme\\?ref=`));
      assert.equal(result.isError, undefined, toolText(result));
      assert.match(toolText(result), /Your acme account is connected/);
      assert.deepEqual(await names(frank), ['acme__admin_op', 'acme__whoami']);
      const whoami = await frank.callTool({ name: 'acme__whoami', arguments: {} });
      assert.equal((JSON.parse(toolText(whoami)) as { sub: string }).sub, 'frank-at-acme');
      assert.ok(toldBeforeRetry > 0, 'an open session got notifications/tools/list_changed once the callback stored the connection');
    } finally {
      await frank.close();
      await watcher.close();
    }
  });

  it('after one user connected and listed, a user who has not connected sees the real tools (also on a fresh replica) and calling one asks to connect', async () => {
    const erin = await mcpClient('erin', 'legacy');
    try {
      assert.deepEqual(await names(erin), ['acme__admin_op', 'acme__whoami']);
      elicitationOf(await erin.callTool({ name: 'acme__whoami', arguments: {} }).then(() => assert.fail('the call should ask to connect'), (e: unknown) => e));
    } finally {
      await erin.close();
    }
    const [row] = await db.query<{ tools: string[] }>("SELECT ARRAY(SELECT t->>'name' FROM jsonb_array_elements(offerings->'tools') t ORDER BY 1) AS tools FROM upstream_listings WHERE server = 'acme'");
    assert.deepEqual(row?.tools, ['admin_op', 'whoami'], 'the listing is stored for every replica');

    b = await startTestApp(db.url, env());
    balancer.pointAt(b.url);
    const onB = await mcpClient('erin', 'legacy');
    const single = await mcpClient('erin', 'legacy', '/mcp/acme');
    let prompted = '';
    const modern = await mcpClient('erin', 'auto', '/mcp', (url) => {
      prompted = url;
      return Promise.resolve('decline');
    });
    try {
      assert.deepEqual(await names(onB), ['acme__admin_op', 'acme__whoami']);
      assert.deepEqual(await names(single), ['admin_op', 'whoami']);
      const elicitation = elicitationOf(await onB.callTool({ name: 'acme__whoami', arguments: {} }).then(() => assert.fail('the call should ask to connect'), (e: unknown) => e));
      assert.match(elicitation.url, new RegExp(`^${balancer.url}/connect/acme\\?ref=`));
      const declined = await modern.callTool({ name: 'acme__whoami', arguments: {} });
      assert.match(prompted, new RegExp(`^${balancer.url}/connect/acme\\?ref=`), 'the 2026-07-28 client was asked to connect');
      assert.equal(declined.isError, true);
      assert.match(toolText(declined), /did not connect your account for "acme"/);
    } finally {
      await onB.close();
      await single.close();
      await modern.close();
    }
  });
});
