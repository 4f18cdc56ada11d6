import { createHash } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { PinoLogger } from 'nestjs-pino';
import type { Principal } from '../auth/principal.js';
import { subjectTokenOf } from '../auth/subject-token.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { SecretsService } from '../secrets/secrets.service.js';
import type { UpstreamOAuthConfig } from '../upstreams/upstream-server.entity.js';
import type { AccessTokenResult, UsableToken } from './upstream-connections.service.js';

/** RFC 8693 §2.1 grant type and the default subject token type. */
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** A token endpoint's answer larger than this is refused. */
const MAX_ANSWER_BYTES = 64 * 1024;
const CACHE_MAX = 20_000;
/** Without `expires_in`, an exchanged token is reused this long (ms). */
const DEFAULT_REUSE_MS = 5 * 60_000;
const PLACEHOLDER = /^\$\{secret:([A-Za-z_][A-Za-z0-9_]{0,127})\}$/;

interface Exchanged {
  token: string;
  expiresAt: number;
  scopes: string[];
}

/**
 * RFC 8693 token exchange for servers with `oauth.mode: 'token_exchange'` (upstreams in the
 * same trust domain): the caller's own incoming bearer token (a JWT or OAuth access token;
 * `subjectTokenOf`) is exchanged at the server's configured token endpoint for one bound to the
 * upstream (`audience` / `resource`), authenticated as the configured client
 * (`client_secret_basic`; the secret may be a `${secret:NAME}` server secret). Results are cached
 * per replica per (server, owner, subject token) until GATEHOUSE_UPSTREAM_OAUTH_REFRESH_SKEW
 * before they expire; concurrent first calls share one exchange. Errors name the server and
 * the provider's error code, never a token.
 */
@Injectable()
export class TokenExchangeService {
  private readonly cache = new LRUCache<string, Exchanged>({ max: CACHE_MAX });
  private readonly inflight = new Map<string, Promise<Exchanged>>();
  private readonly skewMs: number;
  private readonly timeoutMs: number;

  constructor(
    @Inject(APP_CONFIG) config: AppConfig,
    private readonly secrets: SecretsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('UpstreamTokenExchange');
    this.skewMs = config.upstreamOAuth.refreshSkewMs;
    this.timeoutMs = config.upstreamOAuth.fetch.timeoutMs;
  }

  /** The exchanged token for a call from `principal` to `server`, or the failure to report. */
  async tokenFor(server: string, owner: string | null, principal: Principal, oauth: UpstreamOAuthConfig): Promise<AccessTokenResult> {
    const subject = subjectTokenOf(principal);
    if (!subject || owner === null) {
      return { failure: `Server "${server}" is called with your own token exchanged for one it accepts (RFC 8693): authenticate to Gatehouse with a bearer token (JWT or OAuth), not an API key` };
    }
    const k = this.key(server, owner, subject);
    const hit = this.cache.get(k);
    if (hit && hit.expiresAt - this.skewMs > Date.now()) return this.usable(hit, owner);
    let running = this.inflight.get(k);
    if (!running) {
      running = this.exchange(server, subject, oauth).finally(() => this.inflight.delete(k));
      this.inflight.set(k, running);
    }
    try {
      const exchanged = await running;
      this.cache.set(k, exchanged);
      return this.usable(exchanged, owner);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.logger.warn({ server, reason: message }, 'token exchange failed');
      return { failure: message };
    }
  }

  /** Drops the cached exchange of `token` (the upstream refused it): the next call exchanges again. */
  forget(token: UsableToken): void {
    for (const [k, v] of this.cache.entries()) if (v.token === token.token) this.cache.delete(k);
  }

  private usable(e: Exchanged, owner: string): UsableToken {
    return { token: e.token, owner, shared: false, scopes: e.scopes, expiresAt: e.expiresAt };
  }

  /** Cache key: server, owner and a hash of the subject token (a new incoming token exchanges anew). */
  private key(server: string, owner: string, subject: string): string {
    return `${server}\n${owner}\n${createHash('sha256').update(subject).digest('base64url')}`;
  }

  private async exchange(server: string, subject: string, oauth: UpstreamOAuthConfig): Promise<Exchanged> {
    const te = oauth.tokenExchange;
    if (!te) throw new Error(`Server "${server}" has no oauth.tokenExchange settings; an administrator must set them`);
    const form = new URLSearchParams({ grant_type: GRANT, subject_token: subject, subject_token_type: te.subjectTokenType ?? ACCESS_TOKEN_TYPE });
    form.set('requested_token_type', ACCESS_TOKEN_TYPE);
    if (te.audience) form.set('audience', te.audience);
    if (te.resource) form.set('resource', te.resource);
    if (te.scope ?? oauth.scopes?.length) form.set('scope', te.scope ?? oauth.scopes!.join(' '));
    const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
    if (oauth.clientId) {
      const secret = await this.clientSecret(server, oauth.clientSecret);
      if (secret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(oauth.clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`;
      else form.set('client_id', oauth.clientId);
    }
    let response: Response;
    try {
      // An endpoint an administrator configured (oauth.tokenExchange.tokenEndpoint): no redirects, bounded in time.
      response = await fetch(te.tokenEndpoint, { method: 'POST', headers, body: form, redirect: 'error', signal: AbortSignal.timeout(this.timeoutMs) });
    } catch (error) {
      const why = error instanceof Error && error.name === 'TimeoutError' ? `no answer within ${this.timeoutMs} ms` : 'the token endpoint could not be reached';
      throw new Error(`Token exchange for server "${server}" failed: ${why}`, { cause: error });
    }
    const text = await response.text();
    if (text.length > MAX_ANSWER_BYTES) throw new Error(`Token exchange for server "${server}" failed: the answer is larger than ${MAX_ANSWER_BYTES} bytes`);
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(text) as Record<string, unknown>;
    } catch {
      body = {};
    }
    if (!response.ok || typeof body.access_token !== 'string') {
      const code = typeof body.error === 'string' && /^[\x20-\x7E]{1,64}$/.test(body.error) ? body.error : `HTTP ${response.status}`;
      const description = typeof body.error_description === 'string' ? `: ${body.error_description.replace(/[\r\n]+/g, ' ').split(subject).join('[REDACTED]').slice(0, 200)}` : '';
      throw new Error(`Token exchange for server "${server}" was refused by the provider (${code}${description})`);
    }
    const expiresIn = typeof body.expires_in === 'number' && body.expires_in > 0 ? body.expires_in * 1000 : DEFAULT_REUSE_MS + this.skewMs;
    const scopes = typeof body.scope === 'string' ? body.scope.split(' ').filter(Boolean) : [];
    return { token: body.access_token, expiresAt: Date.now() + expiresIn, scopes };
  }

  /** The client secret: a literal, or the server's shared secret a `${secret:NAME}` names. */
  private async clientSecret(server: string, configured: string | undefined): Promise<string | undefined> {
    if (!configured) return undefined;
    const placeholder = PLACEHOLDER.exec(configured);
    if (!placeholder) return configured;
    const { values } = await this.secrets.forCaller(server, null);
    const value = values.get(placeholder[1]);
    if (!value) throw new Error(`Token exchange for server "${server}" needs the server secret "${placeholder[1]}" (oauth.clientSecret), which is not set; an administrator must set it`);
    return value;
  }
}
