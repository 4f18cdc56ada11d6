import { randomBytes, timingSafeEqual } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DataSource } from 'typeorm';
import { sha256 } from './browser-session.service.js';
import { LOGIN_CLOCK, type LoginClock } from './login-clock.js';
import { LoginFailure } from './login-failure.js';

/** A sign-in at an IdP must come back within this long (ms). */
export const FLOW_TTL_MS = 10 * 60_000;
const BINDING = /^[A-Za-z0-9_-]{43}$/;

/** What a started sign-in must remember until its callback. */
export interface LoginFlow {
  provider: string;
  /** OIDC `nonce` (null for plain OAuth2). */
  nonce: string | null;
  /** PKCE `code_verifier` (RFC 7636). */
  codeVerifier: string;
  /** Same-origin path to land on afterwards (checked again when used). */
  returnTo: string;
}

/**
 * Sign-ins in progress at identity providers, kept in PostgreSQL (`login_flows`) so any replica
 * can finish a callback another one started. The OAuth `state` (256 random bits) is the row's
 * key; the row is bound to the starting browser by a cookie (`__Host-gatehouse_login` on https,
 * `gatehouse_login` on http: HttpOnly, SameSite=Lax so the IdP's top-level redirect carries it)
 * whose SHA-256 the row stores. A callback must present both the state and that browser's
 * cookie (RFC 6749 §10.12 and RFC 9700 §4.7.1: state bound to the user agent, against login
 * CSRF), and consumes the row: a replayed callback finds nothing.
 */
@Injectable()
export class LoginFlowStore {
  constructor(
    private readonly dataSource: DataSource,
    @Inject(LOGIN_CLOCK) private readonly clock: LoginClock,
  ) {}

  /** The binding cookie's name for this deployment. */
  static cookieName(secure: boolean): string {
    return secure ? '__Host-gatehouse_login' : 'gatehouse_login';
  }

  /**
   * Records a new flow and returns its `state`. Reuses the browser's binding cookie when it has
   * one (sign-ins started in several tabs all finish), otherwise makes a new one; either way the
   * cookie is (re)set on `reply` for the flow's 10 minutes.
   */
  async begin(request: FastifyRequest, reply: FastifyReply, secure: boolean, flow: LoginFlow): Promise<string> {
    const name = LoginFlowStore.cookieName(secure);
    let binding = request.headers.cookie ? parseCookie(request.headers.cookie)[name] : undefined;
    if (!binding || !BINDING.test(binding)) binding = randomBytes(32).toString('base64url');
    // Set again even when reused, so the cookie lives as long as this newest flow.
    void reply.header('set-cookie', stringifySetCookie({ name, value: binding, httpOnly: true, secure, sameSite: 'lax', path: '/', maxAge: FLOW_TTL_MS / 1000 }));
    const state = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    await this.dataSource.query('DELETE FROM login_flows WHERE expires_at < $1', [new Date(now)]);
    await this.dataSource.query(
      'INSERT INTO login_flows (state, binding_hash, provider, nonce, code_verifier, return_to, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)',
      [state, sha256(binding), flow.provider, flow.nonce, flow.codeVerifier, flow.returnTo, new Date(now + FLOW_TTL_MS)],
    );
    return state;
  }

  /**
   * Consumes the flow named by `state` for `provider` if this browser started it and it has not
   * expired; otherwise throws {@link LoginFailure} `state_mismatch` (400).
   */
  async finish(request: FastifyRequest, secure: boolean, provider: string, state: unknown): Promise<LoginFlow> {
    const binding = request.headers.cookie ? parseCookie(request.headers.cookie)[LoginFlowStore.cookieName(secure)] : undefined;
    const mismatch = new LoginFailure(
      'state_mismatch',
      400,
      'This sign-in cannot be finished: it was started in another browser, already used, or is older than 10 minutes. Please sign in again.',
    );
    if (typeof state !== 'string' || state.length > 200 || !binding || !BINDING.test(binding)) throw mismatch;
    // TypeORM answers a DELETE with [rows, affected count].
    const [rows] = await this.dataSource.query<[{ binding_hash: Buffer; provider: string; nonce: string | null; code_verifier: string; return_to: string; expires_at: Date }[], number]>(
      'DELETE FROM login_flows WHERE state = $1 RETURNING binding_hash, provider, nonce, code_verifier, return_to, expires_at',
      [state],
    );
    const row = rows[0];
    if (!row || row.provider !== provider || row.expires_at.getTime() <= this.clock.now() || !timingSafeEqual(row.binding_hash, sha256(binding))) throw mismatch;
    return { provider: row.provider, nonce: row.nonce, codeVerifier: row.code_verifier, returnTo: row.return_to };
  }
}
