import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UnauthorizedError as V1UnauthorizedError, type OAuthClientProvider as V1Provider } from '@modelcontextprotocol/sdk/client/auth.js';
import { Client as V1Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport as V1Transport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Browser } from 'playwright-core';
import { SIGNED_IN_USER_RESOLVER, type SignedInUserSlot } from '../../src/oauth-server/signed-in-user.js';
import { UsersService } from '../../src/users/users.service.js';
import { startTestApp, type TestApp } from '../support/app.js';
import { Balancer } from '../support/balancer.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { consentInBrowser, freePort, launchChromium, memoryOAuthProvider, redirectUri, TestSignIn, userApiKey } from '../support/oauth.js';
import { EVERYTHING_STDIO, eventually, registerConnected } from '../support/upstreams.js';

const ADMIN_KEY = 'static-bootstrap-key-0123456789abcdef';
const MCP_REMOTE = createRequire(import.meta.url).resolve('mcp-remote/dist/proxy.js');

/**
 * The MCP clients of issue 13 beside the SDK v2 client (test/e2e/oauth-server.test.ts): the SDK
 * v1 client with its OAuth provider, and `mcp-remote` (a real process; its browser step is
 * driven by the test through headless Chromium). Each signs in through Gatehouse as the
 * authorization server, lists the tools and calls one as the signed-in user: the `everything`
 * server's `echo` has its `message` injected from that user's own secret, so the answer proves
 * whose call it was.
 */
describe('MCP clients against Gatehouse as the authorization server', () => {
  let db: TestDatabase;
  let balancer: Balancer;
  let app: TestApp;
  let browser: Browser;
  let alice: string;

  before(async () => {
    db = await createTestDatabase();
    balancer = await Balancer.start();
    app = await startTestApp(db.url, { PUBLIC_URL: balancer.url, MCP_AUTH_STRATEGY: 'oauth2,api_key', MCP_API_KEYS: ADMIN_KEY, GATEHOUSE_OAUTH_SERVER: 'true' });
    balancer.pointAt(app.url);
    app.app.get<SignedInUserSlot>(SIGNED_IN_USER_RESOLVER).use(new TestSignIn());
    alice = (await app.app.get(UsersService).resolve({ issuer: 'test-idp', subject: 'alice', email: 'alice@example.com', displayName: 'Alice', groups: [] })).id;
    await registerConnected(app.url, { ...EVERYTHING_STDIO, inject: { message: '${secret:GREETING}' } }, { 'x-api-key': ADMIN_KEY });
    const key = await userApiKey(app.app, alice, 'alice-setup');
    const secret = await fetch(`${app.url}/api/v1/me/secrets/everything/GREETING`, { method: 'PUT', headers: { 'x-api-key': key, 'content-type': 'application/json' }, body: JSON.stringify({ value: 'hello from alice-secret-42' }) });
    assert.ok(secret.ok, await secret.text());
    browser = await launchChromium();
  });

  after(async () => {
    await browser?.close();
    await app?.shutdown('test');
    await balancer?.close();
    await db?.drop();
  });

  it('the SDK v1 client with its OAuth provider connects, lists and calls a tool as the signed-in user (her secret injected)', async () => {
    const redirectUrl = await redirectUri('/sdk-v1/callback');
    const memory = memoryOAuthProvider('SDK v1', redirectUrl);
    const provider: V1Provider = memory.provider;
    const mcpUrl = new URL(`${balancer.url}/mcp`);
    const first = new V1Transport(mcpUrl, { authProvider: provider });
    await assert.rejects(new V1Client({ name: 'sdk-v1', version: '1' }).connect(first), V1UnauthorizedError);
    const authUrl = memory.authorizationUrl();
    assert.ok(authUrl, 'the client was sent to the authorization endpoint');
    assert.equal(authUrl.searchParams.get('resource'), `${balancer.url}/mcp`, 'RFC 8707 resource from the protected-resource metadata');
    const { params } = await consentInBrowser(browser, balancer.url, alice, authUrl.href, redirectUrl);
    await first.finishAuth(params.get('code') ?? '');
    const client = new V1Client({ name: 'sdk-v1', version: '1' });
    await client.connect(new V1Transport(mcpUrl, { authProvider: provider }));
    try {
      const tools = await client.listTools();
      const echo = tools.tools.find((t) => t.name === 'everything__echo');
      assert.ok(echo, 'everything__echo listed');
      assert.ok(!Object.keys(echo.inputSchema.properties ?? {}).includes('message'), 'the injected argument is not shown');
      const result = await client.callTool({ name: 'everything__echo', arguments: {} });
      assert.match(JSON.stringify(result.content), /hello from alice-secret-42/);
    } finally {
      await client.close();
    }
  });

  it('mcp-remote signs in through the browser (driven by the test), then lists and calls a tool as the signed-in user', async () => {
    const configDir = mkdtempSync(join(tmpdir(), 'gatehouse-mcp-remote-'));
    const callbackPort = await freePort();
    // mcp-remote prints the authorization URL and tries to open a browser: BROWSER=true makes
    // xdg-open "succeed" without one, and the test opens the printed URL in Chromium itself.
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [MCP_REMOTE, `${balancer.url}/mcp`, String(callbackPort), '--allow-http', '--transport', 'http-only'],
      env: { PATH: process.env.PATH ?? '', HOME: configDir, MCP_REMOTE_CONFIG_DIR: configDir, BROWSER: 'true' },
      stderr: 'pipe',
    });
    let stderr = '';
    transport.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const client = new V1Client({ name: 'via-mcp-remote', version: '1' });
    const connecting = client.connect(transport);
    try {
      const authUrl = await eventually('mcp-remote printed the authorization URL', () => /(http:\/\/127\.0\.0\.1:\d+\/oauth\/authorize\?\S+)/.exec(stderr)?.[1], 30_000);
      const redirect = new URL(authUrl).searchParams.get('redirect_uri') ?? '';
      assert.match(redirect, /^http:\/\/(localhost|127\.0\.0\.1):\d+\/oauth\/callback$/, redirect);
      const flow = await consentInBrowser(browser, balancer.url, alice, authUrl, redirect, 'approve', { listen: false });
      assert.equal(flow.consentShown, true);
      assert.ok(flow.params.get('code'), flow.params.toString());
      await connecting;
      const tools = await client.listTools();
      assert.ok(tools.tools.some((t) => t.name === 'everything__echo'));
      const result = await client.callTool({ name: 'everything__echo', arguments: {} });
      assert.match(JSON.stringify(result.content), /hello from alice-secret-42/);
    } catch (error) {
      throw new Error(`${(error as Error).message}\nmcp-remote said:\n${stderr.slice(-3000)}`, { cause: error });
    } finally {
      await client.close().catch(() => undefined);
      rmSync(configDir, { recursive: true, force: true });
    }
  });
});
