import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AppConfig } from '../config/config.schema.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { HostOriginRules, type RequestHead } from '../common/http/host-origin.js';
import { REQUEST_ID_HEADER } from '../common/http/request-id.js';
import { OAUTH_ROUTES, OAuthProviderService, SIGNED_IN, type RawWithUser } from './oauth-provider.service.js';
import { InteractionPages } from './interaction-pages.js';
import { SIGNED_IN_USER_RESOLVER, type SignedInUserResolver } from './signed-in-user.js';
import type { INestApplicationContext } from '@nestjs/common';

/** Endpoints a browser-based client (MCP Inspector, Claude.ai) calls cross-origin without cookies: CORS for any origin. */
const CORS_PATHS = new Set<string>([
  '/.well-known/oauth-authorization-server',
  '/.well-known/openid-configuration',
  OAUTH_ROUTES.token,
  OAUTH_ROUTES.registration,
  OAUTH_ROUTES.revocation,
  OAUTH_ROUTES.jwks,
  OAUTH_ROUTES.device_authorization,
  OAUTH_ROUTES.introspection,
  OAUTH_ROUTES.userinfo,
]);

/** Whether oidc-provider answers `path` (no query). */
export function isOAuthServerPath(path: string): boolean {
  return (
    path.startsWith('/oauth/') ||
    path === '/.well-known/oauth-authorization-server' ||
    path === '/.well-known/openid-configuration' ||
    path.startsWith('/interaction/') ||
    path === OAUTH_ROUTES.code_verification ||
    path.startsWith(`${OAUTH_ROUTES.code_verification}/`)
  );
}

function refuse(request: FastifyRequest, reply: FastifyReply, status: number, code: ErrorCode, message: string): void {
  void reply.status(status).header(REQUEST_ID_HEADER, request.id).header('content-type', 'application/json; charset=utf-8').send({ error: { code, message, requestId: request.id } });
}

/**
 * Mounts oidc-provider (a Koa app) on Fastify: an `onRequest` hook, installed before the global
 * Host/Origin hook, hands the raw request and response of the authorization server's paths to
 * `provider.callback()`. Fastify parses no body there (oidc-provider reads the raw body itself)
 * and no Nest guard runs. The hook applies what it skips: the Host/Origin rules (CORS endpoints —
 * metadata, token, registration, revocation, JWKS, device authorization — are open to any
 * `Origin`: they take no cookies, RFC 8414 §3 / MCP authorization spec; the cookie-bearing
 * authorization and device pages keep the full rules), 503 until migrated. It also resolves the
 * signed-in Gatehouse user for the pages that need one, and makes the URLs oidc-provider builds
 * those of `PUBLIC_URL` whatever proxy is in front (Host was validated already).
 */
export function installOAuthServer(
  fastify: FastifyInstance,
  options: { config: AppConfig; provider: OAuthProviderService; resolver: SignedInUserResolver; isMigrated: () => boolean },
): void {
  const pages = new InteractionPages(options.config, options.resolver);
  const rules = HostOriginRules.fromConfig(options.config);
  const publicUrl = new URL(options.config.http.publicUrl);
  // Synchronous for every other path (no promise per request): only the authorization
  // server's paths enter the asynchronous part, which ends by handing on, replying or hijacking.
  fastify.addHook('onRequest', (request, reply, done) => {
    const queryAt = request.url.indexOf('?');
    const path = queryAt === -1 ? request.url : request.url.slice(0, queryAt);
    if (!isOAuthServerPath(path)) {
      done();
      return;
    }
    serve(request, reply, path).then(
      () => done(),
      (error: Error | undefined) => done(error ?? new Error('the authorization server hook failed')),
    );
  });

  async function serve(request: FastifyRequest, reply: FastifyReply, path: string): Promise<unknown> {
    const cors = CORS_PATHS.has(path);
    const head = request.raw as unknown as RequestHead;
    // Pages sent with `Referrer-Policy: no-referrer` make Chromium post their forms with
    // `Origin: null`; `Sec-Fetch-Site: same-origin` (which no script can set) vouches for them.
    const sameOriginForm = head.headers.origin === 'null' && head.headers['sec-fetch-site'] === 'same-origin';
    const checked = cors || sameOriginForm ? { ...head, headers: { ...head.headers, origin: undefined, 'sec-fetch-site': undefined } } : head;
    const refusal = rules.check(checked);
    if (refusal) return refuse(request, reply, refusal.status, refusal.code, refusal.message);
    if (cors) {
      void reply.header('access-control-allow-origin', '*').header('access-control-expose-headers', 'WWW-Authenticate');
      if (request.method === 'OPTIONS') {
        void reply
          .status(204)
          .header('access-control-allow-methods', 'GET, POST, OPTIONS')
          .header('access-control-allow-headers', 'Authorization, Content-Type, DPoP, MCP-Protocol-Version')
          .header('access-control-max-age', '600')
          .send();
        return reply;
      }
    }
    if (!options.isMigrated()) {
      void reply.header('retry-after', '2');
      return refuse(request, reply, 503, ErrorCode.ServiceUnavailable, 'Gatehouse is starting: database migrations are not applied yet');
    }
    const raw = request.raw as typeof request.raw & RawWithUser;
    const interaction = /^\/interaction\/([^/]+)$/.exec(path);
    if (interaction) {
      if (request.method !== 'GET' && request.method !== 'POST') return refuse(request, reply, 405, ErrorCode.MethodNotAllowed, `${request.method} is not allowed here; use GET or POST`);
      const provider = await options.provider.provider();
      reply.hijack();
      reply.raw.setHeader(REQUEST_ID_HEADER, request.id);
      await pages.handle(provider, request, reply, interaction[1]);
      return;
    }
    if (path === OAUTH_ROUTES.authorization || path.startsWith(`${OAUTH_ROUTES.authorization}/`) || path === OAUTH_ROUTES.code_verification || path.startsWith(`${OAUTH_ROUTES.code_verification}/`)) {
      raw[SIGNED_IN] = await options.resolver.current(request);
      // The device page is for signed-in people: sign in first, then type the code.
      if (path === OAUTH_ROUTES.code_verification && request.method === 'GET' && !raw[SIGNED_IN]) {
        const returnTo = request.url.startsWith('/device') ? request.url : '/device';
        void reply.redirect(options.resolver.loginUrl(returnTo), 303);
        return reply;
      }
    }
    // RFC 8414 §3: the metadata of an issuer without a path; oidc-provider serves the same document under the OpenID name.
    if (path === '/.well-known/oauth-authorization-server') raw.url = '/.well-known/openid-configuration';
    raw.headers['x-forwarded-host'] = publicUrl.host;
    raw.headers['x-forwarded-proto'] = publicUrl.protocol.slice(0, -1);
    delete raw.headers['x-forwarded-for'];
    if (path === OAUTH_ROUTES.registration && request.method === 'POST') {
      const patched = await nativeByRedirects(raw);
      if (patched === 'too_large') return refuse(request, reply, 413, ErrorCode.PayloadTooLarge, 'the registration request is larger than 64 KiB');
    }
    if (path === OAUTH_ROUTES.token && request.method === 'POST') {
      const form = await readTokenForm(raw);
      if (form === 'too_large') return refuse(request, reply, 413, ErrorCode.PayloadTooLarge, 'the token request is larger than 56 KiB');
      const deviceCode = form?.get('grant_type') === DEVICE_CODE_GRANT ? form.get('device_code') : null;
      if (deviceCode && (await options.provider.pollTooSoon(deviceCode))) {
        void reply
          .status(400)
          .header('cache-control', 'no-store')
          .header('content-type', 'application/json; charset=utf-8')
          .send({ error: 'slow_down', error_description: 'you are polling too quickly; wait 5 seconds more between requests (RFC 8628 §3.5)' });
        return reply;
      }
    }
    const provider = await options.provider.provider();
    reply.hijack();
    // Headers set on the Fastify reply so far (request id, CORS) go out with oidc-provider's answer.
    for (const [name, value] of Object.entries(reply.getHeaders())) if (value !== undefined) reply.raw.setHeader(name, value);
    void provider.callback()(raw, reply.raw);
  }
}

/** {@link installOAuthServer} with its parts taken from the Nest application (bootstrap). */
export function installOAuthServerFrom(app: INestApplicationContext, fastify: FastifyInstance, config: AppConfig, isMigrated: () => boolean): void {
  installOAuthServer(fastify, { config, provider: app.get(OAuthProviderService), resolver: app.get<SignedInUserResolver>(SIGNED_IN_USER_RESOLVER), isMigrated });
}

const MAX_REGISTRATION_BYTES = 64 * 1024;
/** oidc-provider's own limit on a request body. */
const MAX_TOKEN_FORM_BYTES = 56 * 1024;
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * Reads a form-encoded token request (bounded) so the device-code poll can be throttled before
 * oidc-provider runs; hands the text on as `raw.body`, which oidc-provider parses itself (repeated
 * parameters such as `resource` kept). Undefined for another content type (left unread).
 */
async function readTokenForm(raw: NodeJS.ReadableStream & { body?: unknown; headers: Record<string, unknown> }): Promise<URLSearchParams | 'too_large' | undefined> {
  const contentType = raw.headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.toLowerCase().startsWith('application/x-www-form-urlencoded')) return undefined;
  const text = await readBounded(raw, MAX_TOKEN_FORM_BYTES);
  if (text === undefined) return 'too_large';
  raw.body = text;
  return new URLSearchParams(text);
}

/** The whole body as UTF-8, or undefined when it exceeds `limit` bytes. */
async function readBounded(raw: NodeJS.ReadableStream, limit: number): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * RFC 7591 registrations without `application_type` whose redirect URIs are a private-use scheme
 * (Cursor's `cursor://…`, VS Code's) or http loopback are native apps (OpenID Connect Dynamic
 * Registration §2 defaults to `web`, which oidc-provider then refuses for such URIs). The body
 * is read here (bounded) and handed to oidc-provider parsed, which it accepts from `req.body`.
 */
async function nativeByRedirects(raw: NodeJS.ReadableStream & { body?: unknown; headers: Record<string, unknown> }): Promise<'too_large' | undefined> {
  const contentType = raw.headers['content-type'];
  if (typeof contentType !== 'string' || !contentType.toLowerCase().startsWith('application/json')) return undefined;
  const text = await readBounded(raw, MAX_REGISTRATION_BYTES);
  if (text === undefined) return 'too_large';
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    raw.body = text; // oidc-provider answers invalid_request for it
    return undefined;
  }
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const metadata = body as { application_type?: unknown; redirect_uris?: unknown };
    const uris = Array.isArray(metadata.redirect_uris) ? metadata.redirect_uris.filter((u): u is string => typeof u === 'string') : [];
    const nativeLike = (u: string) => {
      const url = URL.parse(u);
      return !!url && (!['http:', 'https:'].includes(url.protocol) || (url.protocol === 'http:' && /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])$/.test(url.hostname)));
    };
    if (metadata.application_type === undefined && uris.length > 0 && uris.some((u) => !['http:', 'https:'].includes(URL.parse(u)?.protocol ?? '')) && uris.every(nativeLike)) {
      metadata.application_type = 'native';
    }
  }
  raw.body = body;
  return undefined;
}
