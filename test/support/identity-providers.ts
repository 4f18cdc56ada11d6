import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import Provider from 'oidc-provider';

/** A person at a test IdP. */
export interface IdpAccount {
  email?: string;
  email_verified?: boolean;
  name?: string;
  groups?: string[];
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

/**
 * The team's identity provider for tests: a real `oidc-provider` (the certified OpenID Provider
 * implementation) on a free port, with its development login and consent pages (any login name
 * is accepted; the password is ignored). `accounts` maps login names to claims; an unknown name
 * gets `<name>@example.com`, verified.
 */
export async function startOidcIdp(options: { clientId: string; clientSecret: string; redirectUris: string[]; accounts: Record<string, IdpAccount> }): Promise<{ issuer: string; close(): Promise<void> }> {
  const server = createServer();
  const issuer = await listen(server);
  const provider = new Provider(issuer, {
    clients: [{ client_id: options.clientId, client_secret: options.clientSecret, redirect_uris: options.redirectUris, grant_types: ['authorization_code'], response_types: ['code'] }],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'groups'] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    findAccount: (_ctx, id) => {
      const account = options.accounts[id] ?? { email: `${id}@example.com`, email_verified: true, name: id };
      return { accountId: id, claims: () => ({ sub: id, ...account }) };
    },
    // Silence the development-only warnings' noise in test output is not possible; they are harmless.
  });
  const handle = provider.callback();
  server.on('request', (req, res) => void handle(req, res));
  return { issuer, close: () => close(server) };
}

/** A plain OAuth 2.0 provider (GitHub-like) that auto-approves as `user()`: authorize, token (PKCE S256 checked), user. */
export interface OAuth2Fixture {
  url: string;
  /** Answers of `/user` for the next sign-ins. */
  user: Record<string, unknown>;
  /** Token requests seen (to check PKCE and client authentication). */
  tokenRequests: URLSearchParams[];
  close(): Promise<void>;
}

export async function startOAuth2Provider(options: { clientId: string; clientSecret: string }): Promise<OAuth2Fixture> {
  const codes = new Map<string, { challenge: string; redirectUri: string }>();
  const tokens = new Set<string>();
  const fixture: OAuth2Fixture = { url: '', user: { id: 4242, login: 'octo', name: 'Octo Cat', email: 'octo@example.com' }, tokenRequests: [], close: () => Promise.resolve() };
  const body = (req: IncomingMessage) =>
    new Promise<string>((resolve) => {
      let text = '';
      req.on('data', (c: Buffer) => (text += c.toString()));
      req.on('end', () => resolve(text));
    });
  const json = (res: ServerResponse, status: number, value: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    void (async () => {
      if (url.pathname === '/authorize') {
        const q = url.searchParams;
        if (q.get('client_id') !== options.clientId || q.get('code_challenge_method') !== 'S256' || !q.get('code_challenge') || !q.get('state')) {
          return json(res, 400, { error: 'invalid_request' });
        }
        const code = randomBytes(16).toString('hex');
        codes.set(code, { challenge: q.get('code_challenge')!, redirectUri: q.get('redirect_uri')! });
        const back = new URL(q.get('redirect_uri')!);
        back.searchParams.set('code', code);
        back.searchParams.set('state', q.get('state')!);
        return res.writeHead(302, { location: back.toString() }).end();
      }
      if (url.pathname === '/token' && req.method === 'POST') {
        const form = new URLSearchParams(await body(req));
        fixture.tokenRequests.push(form);
        const basic = req.headers.authorization?.startsWith('Basic ') ? Buffer.from(req.headers.authorization.slice(6), 'base64').toString().split(':') : [];
        const [id, secret] = basic.length ? basic : [form.get('client_id'), form.get('client_secret')];
        if (id !== options.clientId || secret !== options.clientSecret) return json(res, 401, { error: 'invalid_client' });
        const grant = codes.get(form.get('code') ?? '');
        codes.delete(form.get('code') ?? '');
        const verifier = form.get('code_verifier') ?? '';
        if (!grant || grant.redirectUri !== form.get('redirect_uri') || createHash('sha256').update(verifier).digest('base64url') !== grant.challenge) {
          return json(res, 400, { error: 'invalid_grant' });
        }
        const token = randomBytes(16).toString('hex');
        tokens.add(token);
        return json(res, 200, { access_token: token, token_type: 'bearer', scope: form.get('scope') ?? '' });
      }
      if (url.pathname === '/user') {
        const token = req.headers.authorization?.replace(/^Bearer /, '') ?? '';
        if (!tokens.has(token)) return json(res, 401, { message: 'Bad credentials' });
        return json(res, 200, fixture.user);
      }
      return json(res, 404, { error: 'not_found' });
    })();
  });
  fixture.url = await listen(server);
  fixture.close = () => close(server);
  return fixture;
}
