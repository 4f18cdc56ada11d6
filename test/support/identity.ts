import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTPayload } from 'jose';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/**
 * A local identity provider's key material, published the way real ones do: a JWKS over HTTP
 * (`/jwks.json`) and authorization server metadata (`/.well-known/oauth-authorization-server`,
 * RFC 8414) naming it. Tokens are signed with real keys; nothing about verification is mocked.
 */
export class LocalIssuer {
  readonly keys = new Map<string, { pair: KeyPair; alg: string; published: boolean }>();
  /** How many times the JWKS was fetched (to prove caching and refetch limits). */
  jwksFetches = 0;
  private server!: Server;
  url = '';

  static async start(): Promise<LocalIssuer> {
    const issuer = new LocalIssuer();
    await issuer.addKey('rs-1', 'RS256');
    await issuer.listen();
    return issuer;
  }

  get jwksUrl(): string {
    return `${this.url}/jwks.json`;
  }

  async addKey(kid: string, alg: 'RS256' | 'ES256' | 'PS256', published = true): Promise<void> {
    this.keys.set(kid, { pair: await generateKeyPair(alg, { extractable: true }), alg, published });
  }

  publish(kid: string): void {
    const key = this.keys.get(kid);
    if (key) key.published = true;
  }

  /** The public key of `kid` as PEM text (SPKI), for the HS/RS key-confusion test. */
  async publicPem(kid: string): Promise<string> {
    const { exportSPKI } = await import('jose');
    return exportSPKI(this.keys.get(kid)!.pair.publicKey);
  }

  async sign(claims: JWTPayload, options: { kid?: string; expiresIn?: string | number; notBefore?: number; issuer?: string | null } = {}): Promise<string> {
    const kid = options.kid ?? 'rs-1';
    const key = this.keys.get(kid);
    if (!key) throw new Error(`no key ${kid}`);
    const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg: key.alg, kid, typ: 'JWT' }).setIssuedAt();
    if (options.issuer !== null) jwt.setIssuer(options.issuer ?? this.url);
    jwt.setExpirationTime(options.expiresIn ?? '10m');
    if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore);
    return jwt.sign(key.pair.privateKey);
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async jwks(): Promise<{ keys: JWK[] }> {
    const keys: JWK[] = [];
    for (const [kid, { pair, alg, published }] of this.keys) {
      if (published) keys.push({ ...(await exportJWK(pair.publicKey)), kid, alg, use: 'sig' });
    }
    return { keys };
  }

  private async listen(): Promise<void> {
    this.server = createServer((req, res) => {
      void (async () => {
        if (req.url === '/jwks.json') {
          this.jwksFetches++;
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(await this.jwks()));
        } else if (req.url === '/.well-known/oauth-authorization-server') {
          res
            .writeHead(200, { 'content-type': 'application/json' })
            .end(JSON.stringify({ issuer: this.url, jwks_uri: this.jwksUrl, authorization_endpoint: `${this.url}/authorize`, token_endpoint: `${this.url}/token` }));
        } else {
          res.writeHead(404).end();
        }
      })();
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

/** An HS256 token signed with `secret` (the `bearer` strategy with MCP_JWT_SECRET). */
export async function hsToken(secret: string, claims: JWTPayload, options: { expiresIn?: string | number; notBefore?: number; issuer?: string; alg?: string } = {}): Promise<string> {
  const jwt = new SignJWT({ ...claims }).setProtectedHeader({ alg: options.alg ?? 'HS256', typ: 'JWT' }).setIssuedAt();
  if (options.issuer) jwt.setIssuer(options.issuer);
  jwt.setExpirationTime(options.expiresIn ?? '10m');
  if (options.notBefore !== undefined) jwt.setNotBefore(options.notBefore);
  return jwt.sign(new TextEncoder().encode(secret));
}

/** An unsigned token (`alg: none`), which must never be accepted. */
export function unsignedToken(claims: JWTPayload): string {
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc({ iat: Math.floor(Date.now() / 1000), exp: Math.floor(Date.now() / 1000) + 600, ...claims })}.`;
}
