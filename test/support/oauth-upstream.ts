import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMcpHandler, McpServer, OAuthError, OAuthErrorCode, requireBearerAuth, type AuthInfo } from '@modelcontextprotocol/server';
import { createLocalJWKSet, exportJWK, generateKeyPair, jwtVerify, SignJWT, type JWK } from 'jose';
import Provider, { type KoaContextWithOIDC } from 'oidc-provider';
import { z } from 'zod';

/** RFC 8693 grant type, registered on the fixture's authorization server. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/** Tokens as the fixture AS's token endpoint answers. */
export interface MintedTokens {
  access_token: string;
  refresh_token?: string;
  expires_in: number;
  scope?: string;
  token_type: string;
}

export interface OAuthUpstreamOptions {
  /** Access-token lifetime in seconds (default 3600). */
  accessTokenTtl?: number;
  /** Redirect URIs of the pre-registered client besides the fixture's own `<issuer>/cb`. */
  redirectUris?: string[];
  /**
   * Token exchange: checks the subject token (Gatehouse's caller's own token) and returns its
   * subject; throw to refuse (`invalid_grant`). Default: refuse everything.
   */
  verifySubjectToken?: (token: string, type: string) => Promise<{ sub: string }>;
  /** Delay (ms) the token endpoint adds to every refresh (to widen races). */
  refreshDelayMs?: number;
}

/** A running upstream protected by its own authorization server; see {@link startOAuthUpstream}. */
export interface OAuthUpstream {
  /** The AS issuer (`http://127.0.0.1:<port>`); metadata at `/.well-known/openid-configuration` and RFC 8414's path. */
  issuer: string;
  tokenEndpoint: string;
  revocationEndpoint: string;
  /** The MCP endpoint (`http://127.0.0.1:<port>/mcp`), also the tokens' audience (RFC 8707 resource). */
  mcpUrl: string;
  /** The pre-registered confidential client (authorization_code, refresh_token, token exchange). */
  clientId: string;
  clientSecret: string;
  /** Who the interaction logs in when the authorization request has no `login_hint` (the browser flow). */
  nextLogin: string;
  /** Successful refresh_token grants so far. */
  refreshes: number;
  /** Refresh grants the AS refused (e.g. invalid_grant). */
  refreshFailures: number;
  /** Token-exchange grants answered. */
  exchanges: number;
  /** The access tokens the token-exchange grant issued (for leak checks). */
  exchangedTokens: string[];
  /** Every request to the MCP endpoint: the token's subject (or null when refused) and the JSON-RPC method. */
  seen: { sub: string | null; method: string | undefined; status: number }[];
  /** Tools and the scope each needs beyond a valid token (403 insufficient_scope without it). */
  toolScopes: Record<string, string>;
  /** Access tokens whose `iat` is earlier than this (seconds since the epoch) are refused with 401 invalid_token. */
  rejectIssuedBefore: number;
  /** Runs the authorization-code flow for `login` (auto-approved consent) and returns the token response. */
  mintTokens(login: string, scopes?: string[]): Promise<MintedTokens>;
  /** Revokes every grant (and so every refresh token) `login` was given. */
  revokeGrantsOf(login: string): Promise<void>;
  close(): Promise<void>;
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Serves a web-standard `Response` on a Node response. */
async function send(res: ServerResponse, response: Response): Promise<void> {
  const headers: Record<string, string> = {};
  response.headers.forEach((v, k) => (headers[k] = v));
  res.writeHead(response.status, headers);
  if (!response.body) return void res.end();
  const reader = response.body.getReader();
  for (;;) {
    const { done, value } = (await reader.read()) as { done: boolean; value?: Uint8Array };
    if (done) break;
    res.write(value);
  }
  res.end();
}

/**
 * An upstream MCP server that needs OAuth, as a remote MCP server following the MCP
 * authorization spec would (for issue 14's tests):
 *
 * - its own authorization server: a real `oidc-provider` on a free port, JWT access tokens
 *   whose audience is the MCP URL (RFC 8707), refresh tokens that rotate, revocation (RFC 7009),
 *   dynamic registration, a token-exchange grant (RFC 8693), and an interaction that approves at
 *   once as `login_hint` (else {@link OAuthUpstream.nextLogin});
 * - an SDK v2 streamable-HTTP MCP server (`createMcpHandler`, both eras) that verifies those
 *   tokens (`requireBearerAuth`: 401 `invalid_token`, 403 `insufficient_scope`, each with
 *   `WWW-Authenticate` naming its RFC 9728 metadata), serves that metadata, and offers `whoami`
 *   (the token's `sub`, scopes and client) and `admin_op` (needs scope `admin`).
 */
export async function startOAuthUpstream(options: OAuthUpstreamOptions = {}): Promise<OAuthUpstream> {
  const asServer = createServer();
  const mcpServer = createServer();
  const issuer = await listen(asServer);
  const mcpBase = await listen(mcpServer);
  const mcpUrl = `${mcpBase}/mcp`;
  const ttl = options.accessTokenTtl ?? 3600;
  const clientId = 'gatehouse-upstream';
  const clientSecret = randomBytes(24).toString('base64url');
  const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
  const kid = randomBytes(8).toString('hex');
  const privateJwk: JWK = { ...(await exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
  const publicJwks = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' }] });
  const grantsBySub = new Map<string, Set<string>>();

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        client_secret: clientSecret,
        redirect_uris: [`${issuer}/cb`, ...(options.redirectUris ?? [])],
        grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE_GRANT],
        response_types: ['code'],
        token_endpoint_auth_method: 'client_secret_basic',
      },
    ],
    jwks: { keys: [privateJwk] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    scopes: ['openid', 'offline_access', 'read', 'write', 'admin'],
    findAccount: (_ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    pkce: { required: () => false },
    rotateRefreshToken: true,
    issueRefreshToken: (_ctx, client) => Promise.resolve(client.grantTypeAllowed('refresh_token')),
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      registration: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => Promise.resolve(mcpUrl),
        useGrantedResource: () => Promise.resolve(true),
        getResourceServerInfo: () => Promise.resolve({ audience: mcpUrl, scope: 'read write admin', accessTokenTTL: ttl, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } }),
      },
    },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  });

  const fixture: OAuthUpstream = {
    issuer,
    tokenEndpoint: `${issuer}/token`,
    revocationEndpoint: `${issuer}/token/revocation`,
    mcpUrl,
    clientId,
    clientSecret,
    nextLogin: 'alice',
    refreshes: 0,
    refreshFailures: 0,
    exchanges: 0,
    exchangedTokens: [],
    seen: [],
    toolScopes: { admin_op: 'admin' },
    rejectIssuedBefore: 0,
    mintTokens: (login, scopes) => mintTokens(fixture, login, scopes),
    revokeGrantsOf: async (login) => {
      for (const grantId of grantsBySub.get(login) ?? []) {
        await provider.RefreshToken.revokeByGrantId(grantId);
        await provider.AccessToken.revokeByGrantId(grantId);
        const grant = await provider.Grant.find(grantId);
        await grant?.destroy();
      }
    },
    close: async () => {
      await Promise.all([closeServer(asServer), closeServer(mcpServer)]);
    },
  };

  provider.on('grant.success', (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') fixture.refreshes++;
  });
  provider.on('grant.error', (ctx: KoaContextWithOIDC) => {
    if (ctx.oidc.params?.grant_type === 'refresh_token') fixture.refreshFailures++;
  });
  if (options.refreshDelayMs) {
    const delay = options.refreshDelayMs;
    provider.use(async (ctx, next) => {
      if (ctx.path === '/token' && ctx.method === 'POST') await new Promise((r) => setTimeout(r, delay));
      await next();
    });
  }

  // RFC 8693: the subject token is checked by the test's verifier; the issued token is a JWT for the MCP server.
  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx: KoaContextWithOIDC) => {
      const params = ctx.oidc.params as Record<string, string | undefined>;
      const fail = (error: string, description: string) => {
        ctx.status = 400;
        ctx.body = { error, error_description: description };
      };
      if (!params.subject_token || !params.subject_token_type) return fail('invalid_request', 'subject_token and subject_token_type are required');
      if (params.audience && params.audience !== mcpUrl) return fail('invalid_target', 'unknown audience');
      if (params.resource && params.resource !== mcpUrl) return fail('invalid_target', 'unknown resource');
      let sub: string;
      try {
        if (!options.verifySubjectToken) throw new Error('token exchange is not enabled');
        ({ sub } = await options.verifySubjectToken(params.subject_token, params.subject_token_type));
      } catch {
        return fail('invalid_grant', 'the subject token is not accepted');
      }
      const scope = params.scope ?? 'read';
      const accessToken = await new SignJWT({ scope, client_id: ctx.oidc.client!.clientId })
        .setProtectedHeader({ alg: 'RS256', kid, typ: 'at+jwt' })
        .setIssuer(issuer)
        .setSubject(sub)
        .setAudience(mcpUrl)
        .setIssuedAt()
        .setJti(randomBytes(12).toString('hex'))
        .setExpirationTime(`${ttl}s`)
        .sign(privateKey);
      fixture.exchanges++;
      fixture.exchangedTokens.push(accessToken);
      ctx.body = { access_token: accessToken, issued_token_type: ACCESS_TOKEN_TYPE, token_type: 'Bearer', expires_in: ttl, scope };
    },
    ['subject_token', 'subject_token_type', 'audience', 'resource', 'scope', 'requested_token_type', 'actor_token', 'actor_token_type'],
  );

  const oidc = provider.callback();
  asServer.on('request', (req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', issuer).pathname;
      if (path.startsWith('/interaction/')) {
        // Approve at once: log in as login_hint (or nextLogin) and grant what was asked.
        const details = await provider.interactionDetails(req, res);
        const { prompt, params, session } = details;
        let result: Record<string, unknown>;
        if (prompt.name === 'login') {
          result = { login: { accountId: (params.login_hint as string | undefined) ?? fixture.nextLogin } };
        } else {
          const accountId = session!.accountId;
          const grant = details.grantId ? (await provider.Grant.find(details.grantId))! : new provider.Grant({ accountId, clientId: params.client_id as string });
          const missing = prompt.details as { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
          if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
          for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
          const grantId = await grant.save();
          grantsBySub.set(accountId, (grantsBySub.get(accountId) ?? new Set()).add(grantId));
          result = { consent: { grantId } };
        }
        await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
        return;
      }
      if (path === '/cb') return void res.writeHead(200, { 'content-type': 'text/plain' }).end('callback');
      await oidc(req, res);
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
    });
  });

  // The MCP server: RFC 9728 metadata, Bearer verification, then the SDK handler.
  const metadataUrl = new URL(`${mcpBase}/.well-known/oauth-protected-resource/mcp`);
  const verifier = {
    verifyAccessToken: async (token: string): Promise<AuthInfo> => {
      try {
        const { payload } = await jwtVerify(token, publicJwks, { issuer, audience: mcpUrl });
        if ((payload.iat ?? 0) < fixture.rejectIssuedBefore) throw new Error('revoked');
        return {
          token,
          clientId: typeof payload.client_id === 'string' ? payload.client_id : '',
          scopes: (typeof payload.scope === 'string' ? payload.scope : '').split(' ').filter(Boolean),
          expiresAt: payload.exp,
          resource: new URL(mcpUrl),
          extra: { sub: payload.sub },
        };
      } catch {
        throw new OAuthError(OAuthErrorCode.InvalidToken, 'the access token is not valid');
      }
    },
  };
  const gate = requireBearerAuth({ verifier, resourceMetadataUrl: metadataUrl.href, expectedResource: new URL(mcpUrl) });
  const handler = createMcpHandler((ctx) => {
    const server = new McpServer({ name: 'oauth-upstream', version: '1.0.0' }, { capabilities: { tools: {} } });
    const info = () => ctx.authInfo;
    server.registerTool('whoami', { description: "Who the caller's token acts as", inputSchema: z.object({}) }, () => ({
      content: [{ type: 'text', text: JSON.stringify({ sub: info()?.extra?.sub, scopes: info()?.scopes, clientId: info()?.clientId }) }],
    }));
    server.registerTool('admin_op', { description: 'Needs the admin scope', inputSchema: z.object({}) }, () => ({
      content: [{ type: 'text', text: `admin done as ${String(info()?.extra?.sub)}` }],
    }));
    return server;
  });
  mcpServer.on('request', (req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', mcpBase);
      if (url.pathname.startsWith('/.well-known/oauth-protected-resource')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify({ resource: mcpUrl, authorization_servers: [issuer], scopes_supported: ['read', 'write', 'admin'], bearer_methods_supported: ['header'] }));
      }
      if (url.pathname !== '/mcp') return void res.writeHead(404).end();
      const body = req.method === 'POST' ? await readBody(req) : undefined;
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
      const request = new Request(url, { method: req.method, headers, body: body && body.length > 0 ? new Uint8Array(body) : undefined });
      let parsed: { method?: string; params?: { name?: string } } | undefined;
      try {
        parsed = body && body.length > 0 ? (JSON.parse(body.toString('utf8')) as typeof parsed) : undefined;
      } catch {
        parsed = undefined;
      }
      const method = parsed?.method;
      const auth = await gate(request);
      if (auth instanceof Response) {
        fixture.seen.push({ sub: null, method, status: auth.status });
        return void (await send(res, auth));
      }
      const sub = typeof auth.extra?.sub === 'string' ? auth.extra.sub : '';
      const needed = method === 'tools/call' ? fixture.toolScopes[parsed?.params?.name ?? ''] : undefined;
      if (needed && !auth.scopes.includes(needed)) {
        fixture.seen.push({ sub, method, status: 403 });
        const scope = [...new Set([...auth.scopes, needed])].join(' ');
        res.writeHead(403, {
          'content-type': 'application/json',
          'www-authenticate': `Bearer error="insufficient_scope", scope="${scope}", resource_metadata="${metadataUrl.href}", error_description="needs the ${needed} scope"`,
        });
        return void res.end(JSON.stringify({ error: 'insufficient_scope', error_description: `needs the ${needed} scope` }));
      }
      fixture.seen.push({ sub, method, status: 200 });
      await send(res, await handler.fetch(request, { authInfo: auth }));
    })().catch((error: unknown) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
    });
  });

  return fixture;
}

/** A tiny cookie jar over fetch with manual redirects: the authorization-code flow without a browser. */
async function mintTokens(fixture: OAuthUpstream, login: string, scopes: string[] = ['read', 'write']): Promise<MintedTokens> {
  const cookies = new Map<string, string>();
  const redirectUri = `${fixture.issuer}/cb`;
  let url = `${fixture.issuer}/auth?${new URLSearchParams({
    client_id: fixture.clientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: ['openid', 'offline_access', ...scopes].join(' '),
    resource: fixture.mcpUrl,
    login_hint: login,
    prompt: 'consent',
    state: randomBytes(8).toString('hex'),
  }).toString()}`;
  for (let hop = 0; hop < 10; hop++) {
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') } });
    for (const line of response.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair.indexOf('=');
      cookies.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    }
    const location = response.headers.get('location');
    await response.arrayBuffer();
    if (!location) throw new Error(`the authorization flow stopped at ${url} (HTTP ${response.status})`);
    const next = new URL(location, url);
    if (next.href.startsWith(redirectUri)) {
      const code = next.searchParams.get('code');
      if (!code) throw new Error(`the authorization flow failed: ${next.searchParams.get('error') ?? 'no code'}`);
      const token = await fetch(fixture.tokenEndpoint, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`${fixture.clientId}:${fixture.clientSecret}`).toString('base64')}`, 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirectUri, resource: fixture.mcpUrl }),
      });
      const json = (await token.json()) as MintedTokens & { error?: string };
      if (!token.ok) throw new Error(`the token request failed: ${json.error}`);
      return json;
    }
    url = next.href;
  }
  throw new Error('the authorization flow redirected too often');
}
