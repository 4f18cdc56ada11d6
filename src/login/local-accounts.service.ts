import { Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { isUuid } from '../common/validation/uuid.js';
import { holds, type Principal } from '../auth/principal.js';
import { UsersService } from '../users/users.service.js';
import { LOCAL_ISSUER } from './login-users.service.js';
import { LoginFailure } from './login-failure.js';
import { LoginThrottleService } from './login-throttle.service.js';
import { createLocalAccountSchema, MAX_PASSWORD, setPasswordSchema, USERNAME } from './local-accounts.schema.js';
import { decoyHash, hashPassword, needsRehash, verifyPassword, type PasswordHash } from './password-hash.js';

/** A local account as the admin API shows it (never the hash). */
export interface LocalAccountView {
  userId: string;
  username: string;
  email: string | null;
  displayName: string | null;
  roles: string[];
}

interface CredentialRow {
  user_id: string;
  username: string;
  algorithm: string;
  params: PasswordHash['params'];
  salt: Buffer;
  hash: Buffer;
}

/**
 * Gatehouse passwords for teams without an identity provider (issue 13, "Local accounts"):
 * created by admins, stored as scrypt hashes (password-hash.ts), checked with throttling
 * ({@link LoginThrottleService}) and in the same time whether or not the username exists.
 * A local account is a `users` row with issuer `urn:gatehouse:local` and the username as subject;
 * an existing user (e.g. one who signs in at an IdP) can be given a password too.
 */
@Injectable()
export class LocalAccountsService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly users: UsersService,
    private readonly throttle: LoginThrottleService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('LocalAccounts');
  }

  /** Creates a user with a password (409 when the username is taken; 403 granting admin without servers:write). */
  async create(body: unknown, actor: Principal): Promise<LocalAccountView> {
    const input = parseBody(createLocalAccountSchema, body);
    const roles = input.roles ?? ['member'];
    if (roles.includes('admin') && !holds(actor, 'servers:write')) {
      throw new AppError(ErrorCode.Forbidden, 'roles: granting "admin" requires the "servers:write" permission, which you do not hold', { details: { field: 'roles' } });
    }
    const hashed = await hashPassword(input.password);
    const email = input.email?.toLowerCase() ?? null;
    const userId = await this.dataSource.transaction(async (em) => {
      const taken = await em.query<unknown[]>('SELECT 1 FROM local_credentials WHERE username = $1', [input.username]);
      if (taken.length) throw new AppError(ErrorCode.Conflict, `username "${input.username}" is taken`, { details: { field: 'username' } });
      const user = { id: await this.users.create({ issuer: LOCAL_ISSUER, subject: input.username, email, displayName: input.displayName ?? null, roles }, 'username', em) };
      await this.storeCredential(em, user.id, input.username, hashed);
      // The admin vouches for the address: a later IdP sign-in with it verified links to this user.
      await em.query('INSERT INTO login_identities (issuer, subject, user_id, provider, email, email_verified) VALUES ($1, $2, $3, $4, $5, $6)', [
        LOCAL_ISSUER,
        input.username,
        user.id,
        'local',
        email,
        email !== null,
      ]);
      return user.id;
    });
    this.logger.info({ userId, actor: actor.id }, 'local account created');
    return { userId, username: input.username, email, displayName: input.displayName ?? null, roles };
  }

  /**
   * Sets or replaces the password of user `userId` (404 unknown user; 400 when the user has no
   * username yet and none is given; 409 when the username is another user's). Ends the user's
   * password-based browser sessions.
   */
  async setPassword(userId: string, body: unknown, actor: Principal): Promise<{ userId: string; username: string }> {
    const input = parseBody(setPasswordSchema, body);
    const user = isUuid(userId) ? await this.users.byId(userId) : null;
    if (!user) throw new AppError(ErrorCode.NotFound, `user "${userId}" does not exist`);
    const hashed = await hashPassword(input.password);
    const username = await this.dataSource.transaction(async (em) => {
      const [current] = await em.query<{ username: string }[]>('SELECT username FROM local_credentials WHERE user_id = $1 FOR UPDATE', [userId]);
      const name = input.username ?? current?.username;
      if (!name) throw new AppError(ErrorCode.ValidationFailed, 'username: required, since this user has no password yet', { details: { field: 'username' } });
      const [other] = await em.query<{ user_id: string }[]>('SELECT user_id FROM local_credentials WHERE username = $1', [name]);
      if (other && other.user_id !== userId) throw new AppError(ErrorCode.Conflict, `username "${name}" is taken`, { details: { field: 'username' } });
      await this.storeCredential(em, userId, name, hashed);
      await em.query(`UPDATE browser_sessions SET revoked_at = now() WHERE user_id = $1 AND idp = 'local' AND revoked_at IS NULL`, [userId]);
      return name;
    });
    this.logger.info({ userId, actor: actor.id }, 'local password set');
    return { userId, username };
  }

  /** Removes the password of `userId` (404 when it has none) and ends its password-based browser sessions. */
  async removePassword(userId: string, actor: Principal): Promise<void> {
    if (!isUuid(userId)) throw new AppError(ErrorCode.NotFound, `user "${userId}" has no password`);
    const [, count] = await this.dataSource.query<[unknown[], number]>('DELETE FROM local_credentials WHERE user_id = $1', [userId]);
    if (count === 0) throw new AppError(ErrorCode.NotFound, `user "${userId}" has no password`);
    await this.dataSource.query(`UPDATE browser_sessions SET revoked_at = now() WHERE user_id = $1 AND idp = 'local' AND revoked_at IS NULL`, [userId]);
    this.logger.info({ userId, actor: actor.id }, 'local password removed');
  }

  /**
   * Checks a password sign-in and returns the user id. Throws {@link LoginFailure}:
   * `throttled` (429) at the failure limit for the account or the address (without checking the
   * password), `invalid_credentials` (401) for an unknown username or a wrong password — the two
   * take the same time (a decoy hash is checked for unknown names) — and `user_disabled` (403).
   */
  async verify(usernameInput: unknown, password: unknown, ip: string): Promise<string> {
    const username = typeof usernameInput === 'string' ? usernameInput.trim().toLowerCase() : '';
    const pass = typeof password === 'string' ? password : '';
    const invalid = new LoginFailure('invalid_credentials', 401, 'Wrong username or password.');
    const waitMs = await this.throttle.blockedFor(USERNAME.test(username) ? username : '(invalid)', ip);
    if (waitMs > 0) {
      throw new LoginFailure('throttled', 429, `Too many failed sign-ins. Try again in ${Math.ceil(waitMs / 60_000)} minute(s).`, waitMs);
    }
    const row = USERNAME.test(username)
      ? (await this.dataSource.query<CredentialRow[]>('SELECT user_id, username, algorithm, params, salt, hash FROM local_credentials WHERE username = $1', [username]))[0]
      : undefined;
    const stored: PasswordHash = row && row.algorithm === 'scrypt' ? { algorithm: 'scrypt', params: row.params, salt: row.salt, hash: row.hash } : await decoyHash();
    const ok = pass.length > 0 && pass.length <= MAX_PASSWORD && (await verifyPassword(pass, stored)) && row !== undefined;
    if (!ok) {
      await this.throttle.fail(USERNAME.test(username) ? username : '(invalid)', ip);
      throw invalid;
    }
    await this.throttle.succeed(username);
    const user = await this.users.byId(row.user_id);
    if (!user) throw invalid;
    if (user.disabled) throw new LoginFailure('user_disabled', 403, 'Your Gatehouse account is disabled. Ask an administrator.');
    if (needsRehash(stored)) await this.storeCredential(this.dataSource.manager, row.user_id, row.username, await hashPassword(pass));
    return row.user_id;
  }

  private async storeCredential(em: { query: DataSource['query'] }, userId: string, username: string, hashed: PasswordHash): Promise<void> {
    await em.query(
      `INSERT INTO local_credentials (user_id, username, algorithm, params, salt, hash) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (user_id) DO UPDATE SET username = EXCLUDED.username, algorithm = EXCLUDED.algorithm, params = EXCLUDED.params,
         salt = EXCLUDED.salt, hash = EXCLUDED.hash, updated_at = now()`,
      [userId, username, hashed.algorithm, JSON.stringify(hashed.params), hashed.salt, hashed.hash],
    );
  }
}
