import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable, type OnModuleInit } from '@nestjs/common';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { UsersService } from '../users/users.service.js';
import { LOGIN_CLOCK, type LoginClock } from './login-clock.js';
import { DEFAULT_RETURN_TO, safeReturnTo } from './return-to.js';
import type { SignedInUser } from './signed-in-user.js';

/** A session's `last_seen_at` (for the idle limit) is written at most this often (ms). */
const TOUCH_MS = 60_000;
/** The cookie value: 32 random bytes in base64url. */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** SHA-256 of a bearer value: what the database keeps instead of the value itself. */
export const sha256 = (value: string): Buffer => createHash('sha256').update(value).digest();

/** The session cookie's name: `__Host-gatehouse_session` on https (no subdomain can set it), `gatehouse_session` on http. */
export function sessionCookieName(secure: boolean): string {
  return secure ? '__Host-gatehouse_session' : 'gatehouse_session';
}

interface SessionRow {
  id: string;
  user_id: string;
  idp: string;
  amr: string[];
  auth_time: Date;
  last_seen_at: Date;
}

/**
 * Browser sessions: who is signed in to Gatehouse in a browser, for the login, consent and
 * device pages (issue 13). Stored in PostgreSQL (`browser_sessions`), so every replica knows
 * every session. The cookie (`__Host-gatehouse_session` / `gatehouse_session`: HttpOnly,
 * `SameSite=Lax` so it survives the top-level redirect back from an IdP, `Secure` on https) holds
 * 256 random bits; the table holds their SHA-256 only.
 *
 * A session ends at `GATEHOUSE_BROWSER_SESSION_TTL` after sign-in, after
 * `GATEHOUSE_BROWSER_SESSION_IDLE` unused, on sign-out, and when its user is disabled (the
 * user row is checked on every {@link current}, and the rows are revoked on the disabling replica).
 */
@Injectable()
export class BrowserSessionService implements OnModuleInit {
  private readonly secure: boolean;

  constructor(
    private readonly dataSource: DataSource,
    private readonly users: UsersService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    @Inject(LOGIN_CLOCK) private readonly clock: LoginClock,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('BrowserSessions');
    this.secure = config.http.publicUrl.startsWith('https:');
  }

  onModuleInit(): void {
    this.users.onLocalChange((userId) => void this.revokeIfDisabled(userId));
  }

  /** The cookie name this deployment uses (by `PUBLIC_URL`'s scheme). */
  get cookieName(): string {
    return sessionCookieName(this.secure);
  }

  /** Whether pages are served over https (cookies get `Secure` and the `__Host-` prefix). */
  get isSecure(): boolean {
    return this.secure;
  }

  /**
   * The signed-in user of this request's session cookie, or null: no or malformed cookie,
   * unknown, revoked, past its lifetime or idle limit, or its user is disabled or gone.
   * Throws only the database's error.
   */
  async current(request: FastifyRequest): Promise<SignedInUser | null> {
    const token = this.cookieToken(request);
    if (!token) return null;
    const now = this.clock.now();
    const [row] = await this.dataSource.query<SessionRow[]>(
      `SELECT id, user_id, idp, amr, auth_time, last_seen_at FROM browser_sessions
        WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2 AND last_seen_at > $3`,
      [sha256(token), new Date(now), new Date(now - this.config.login.sessionIdleMs)],
    );
    if (!row) return null;
    const user = await this.users.byId(row.user_id);
    if (!user || user.disabled) return null;
    if (now - row.last_seen_at.getTime() >= TOUCH_MS) {
      await this.dataSource.query('UPDATE browser_sessions SET last_seen_at = $2 WHERE id = $1', [row.id, new Date(now)]);
    }
    return { userId: row.user_id, sessionId: row.id, authTime: Math.floor(row.auth_time.getTime() / 1000), idp: row.idp, amr: row.amr };
  }

  /**
   * Where to send a browser that must sign in first: `/login?return_to=<path>`. `returnTo` must
   * be a same-origin path (`/interaction/abc`); anything else is dropped (and checked again when
   * used).
   */
  loginUrl(returnTo: string): string {
    const path = safeReturnTo(returnTo);
    return path && path !== DEFAULT_RETURN_TO ? `/login?return_to=${encodeURIComponent(path)}` : '/login';
  }

  /**
   * Signs `userId` in on this browser: a new session row and cookie (a fresh value on every
   * sign-in, so a cookie planted before sign-in is worthless: session fixation), ending the
   * session the browser held before, if any.
   *
   * @param authTime ms since the epoch when the person authenticated (default now)
   */
  async start(request: FastifyRequest, reply: FastifyReply, session: { userId: string; idp: string; amr: string[]; authTime?: number }): Promise<SignedInUser> {
    const previous = this.cookieToken(request);
    if (previous) await this.dataSource.query('UPDATE browser_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL', [sha256(previous)]);
    const token = randomBytes(32).toString('base64url');
    const now = this.clock.now();
    // Housekeeping, cheap on the expires_at index: rows past their lifetime by a day are only history.
    await this.dataSource.query('DELETE FROM browser_sessions WHERE expires_at < $1', [new Date(now - 86_400_000)]);
    const authTime = session.authTime ?? now;
    const [row] = await this.dataSource.query<{ id: string }[]>(
      `INSERT INTO browser_sessions (token_hash, user_id, idp, amr, auth_time, last_seen_at, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id`,
      [sha256(token), session.userId, session.idp, session.amr, new Date(authTime), new Date(now), new Date(now + this.config.login.sessionTtlMs)],
    );
    void reply.header(
      'set-cookie',
      stringifySetCookie({
        name: this.cookieName,
        value: token,
        httpOnly: true,
        secure: this.secure,
        sameSite: 'lax',
        path: '/',
        maxAge: Math.floor(this.config.login.sessionTtlMs / 1000),
      }),
    );
    this.logger.info({ userId: session.userId, sessionId: row.id, idp: session.idp }, 'browser session started');
    return { userId: session.userId, sessionId: row.id, authTime: Math.floor(authTime / 1000), idp: session.idp, amr: session.amr };
  }

  /** Signs this browser out: revokes its session (if any) and clears the cookie. */
  async end(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    const token = this.cookieToken(request);
    if (token) await this.dataSource.query('UPDATE browser_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL', [sha256(token)]);
    void reply.header('set-cookie', stringifySetCookie({ name: this.cookieName, value: '', httpOnly: true, secure: this.secure, sameSite: 'lax', path: '/', maxAge: 0 }));
  }

  /** Revokes every browser session of `userId`; returns how many were open. */
  async revokeForUser(userId: string): Promise<number> {
    // TypeORM answers an UPDATE with [rows, affected count].
    const [, count] = await this.dataSource.query<[unknown[], number]>('UPDATE browser_sessions SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL', [userId]);
    return count;
  }

  private async revokeIfDisabled(userId: string): Promise<void> {
    try {
      const user = await this.users.byId(userId);
      if (user?.disabled) {
        const ended = await this.revokeForUser(userId);
        if (ended) this.logger.info({ userId, sessions: ended }, 'user disabled; browser sessions revoked');
      }
    } catch (error) {
      // current() refuses a disabled user's sessions anyway; this only tidies the table.
      this.logger.warn({ err: error, userId }, 'could not revoke the browser sessions of a disabled user');
    }
  }

  private cookieToken(request: FastifyRequest): string | undefined {
    const header = request.headers.cookie;
    if (!header) return undefined;
    const value = parseCookie(header)[this.cookieName];
    return value && TOKEN.test(value) ? value : undefined;
  }
}
