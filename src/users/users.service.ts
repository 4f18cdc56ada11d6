import { Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { Repository, type EntityManager } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { pgUnsafeReason, toPgSafe } from '../common/validation/pg-safe.js';
import { isUuid } from '../common/validation/uuid.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { ReplicatedCache } from '../database/replicated-cache.js';
import { SessionsService } from '../sessions/sessions.service.js';
import { holds, type Principal } from '../auth/principal.js';
import { UserEntity } from './user.entity.js';
import { listUsersQuery, patchUserSchema } from './users.schema.js';
import { USERS_CHANGED } from './users.topics.js';

export { USERS_CHANGED };
/** Re-read a cached user (and write `last_seen_at`, refresh claims) at most this often (ms). */
const REFRESH_MS = 60_000;
const MAX_CACHED = 50_000;

/** What an identity provider (or proxy) says about a person, before Gatehouse knows them. */
export interface Identity {
  issuer: string;
  subject: string;
  email: string | null;
  displayName: string | null;
  groups: string[];
}

export interface UserView {
  id: string;
  issuer: string;
  subject: string;
  email: string | null;
  displayName: string | null;
  roles: string[];
  groups: string[];
  disabled: boolean;
  createdAt: string;
  lastSeenAt: string | null;
}

/**
 * Principals that act for a user besides the user itself (e.g. their API keys), named by the
 * module that owns them: `userId` → principal ids. See {@link UsersService.addPrincipalSource}.
 */
export type PrincipalSource = (userId: string) => Promise<string[]>;

/** The identity cache's key: everything the upsert writes, so changed claims are a new key (and a new write). */
const identityKey = (i: Identity): string => JSON.stringify([i.issuer, i.subject, i.email, i.displayName, i.groups]);

/**
 * `identity` as the users table can hold it: `email`, `displayName` and `groups` (informational)
 * with NUL and unpaired surrogates replaced by U+FFFD; throws `AppError` unauthorized when
 * `issuer` or `subject` (the identity itself) holds one.
 */
export function storableIdentity(identity: Identity): Identity {
  const bad = pgUnsafeReason(identity.issuer) ?? pgUnsafeReason(identity.subject);
  if (bad) throw new AppError(ErrorCode.Unauthorized, `the credential's issuer or subject ${bad}`);
  const clean = (s: string | null) => (s === null ? null : toPgSafe(s));
  return { ...identity, email: clean(identity.email), displayName: clean(identity.displayName), groups: identity.groups.map((g) => toPgSafe(String(g))) };
}

export const userPrincipalId = (userId: string) => `user:${userId}`;
export const apiKeyPrincipalId = (keyId: string) => `api_key:${keyId}`;

function toView(u: UserEntity): UserView {
  return {
    id: u.id,
    issuer: u.issuer,
    subject: u.subject,
    email: u.email,
    displayName: u.displayName,
    roles: u.roles,
    groups: u.groups,
    disabled: u.disabled,
    createdAt: u.createdAt.toISOString(),
    lastSeenAt: u.lastSeenAt?.toISOString() ?? null,
  };
}

/**
 * Users: created on first sight from an identity (issuer + subject), kept in per-replica
 * {@link ReplicatedCache}s so an authenticated request costs no database round-trip, and
 * managed by admins (roles, disabled). A change is announced on `users.changed` (inside the
 * writing transaction) and drops every replica's copy; a read racing the change never re-caches
 * the old row. Disabling a user ends their MCP sessions, and those of principals acting for
 * them (see {@link addPrincipalSource}), on every replica.
 */
@Injectable()
export class UsersService implements BeforeApplicationShutdown {
  /** By identity (see `identityKey`): the first-sight upsert, redone at most every {@link REFRESH_MS}. */
  private readonly identities: ReplicatedCache<string, UserEntity>;
  /** By id, for other modules (an API key's owner); `null`: no such user. */
  private readonly users: ReplicatedCache<string, UserEntity | null>;
  private readonly principalSources: PrincipalSource[] = [];
  private readonly changeListeners = new Set<(userId: string) => void>();

  constructor(
    @InjectRepository(UserEntity) private readonly repo: Repository<UserEntity>,
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Users');
    this.identities = new ReplicatedCache<string, UserEntity>(
      { name: 'users-by-identity', max: MAX_CACHED, ttlMs: REFRESH_MS, load: (key) => this.upsert(JSON.parse(key) as [string, string, string | null, string | null, string[]]) },
      bus,
    ).invalidateOn(USERS_CHANGED, ({ id }) => ({ where: (_key, user) => user.id === id }));
    this.users = new ReplicatedCache<string, UserEntity | null>(
      { name: 'users-by-id', max: MAX_CACHED, ttlMs: REFRESH_MS, load: (id) => this.repo.findOneBy({ id }) },
      bus,
    ).invalidateOn(USERS_CHANGED, ({ id }) => id);
  }

  beforeApplicationShutdown(): void {
    this.identities.dispose();
    this.users.dispose();
  }

  /**
   * Registers where to find principals acting for a user (the API keys module: the user's
   * keys), so disabling the user ends their sessions too. An event/hook rather than a call
   * into that module, which itself depends on this one.
   */
  addPrincipalSource(source: PrincipalSource): void {
    this.principalSources.push(source);
  }

  /**
   * Calls `listener(userId)` on this replica right after a change to that user commits here,
   * before the `users.changed` notification comes back over the bus: caches built on users
   * (token principals) drop their entries so this replica's next request sees the change.
   * Other replicas learn of it from the topic. Returns the unsubscribe function.
   */
  onLocalChange(listener: (userId: string) => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /**
   * The user behind `identity`, created on first sight; claims written when they change and at
   * most once a minute otherwise (`last_seen_at`). The informational claims (email, name,
   * groups) are stored with NUL and unpaired surrogates replaced by U+FFFD; an issuer or
   * subject holding one (PostgreSQL cannot store it, and changing it would change who the user
   * is) is refused with `401 unauthorized`. Throws the database's error if it fails.
   */
  async resolve(identity: Identity): Promise<UserEntity> {
    const key = identityKey(storableIdentity(identity));
    // A cached entry is current (invalidation deletes it): the hot path skips the loader's bookkeeping.
    return this.identities.peek(key) ?? this.identities.get(key);
  }

  /** The user with id `id` (cached; dropped on `users.changed`), or null if there is none. */
  async byId(id: string): Promise<UserEntity | null> {
    const hit = this.cachedById(id);
    return hit !== undefined ? hit : this.users.get(id);
  }

  /** {@link byId} without waiting: the user, or null if there is none, when known in memory; undefined when it must be loaded. */
  cachedById(id: string): UserEntity | null | undefined {
    if (!isUuid(id)) return null;
    return this.users.peek(id);
  }

  private async upsert([issuer, subject, email, displayName, groups]: [string, string, string | null, string | null, string[]]): Promise<UserEntity> {
    const rows = await this.repo.query<{ id: string; roles: string[]; disabled: boolean; created: boolean }[]>(
      `INSERT INTO users (issuer, subject, email, display_name, groups, last_seen_at)
       VALUES ($1, $2, $3, $4, $5, now())
       ON CONFLICT (issuer, subject) DO UPDATE
         SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, groups = EXCLUDED.groups, last_seen_at = now(),
             updated_at = CASE WHEN (users.email, users.display_name, users.groups) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.display_name, EXCLUDED.groups)
                               THEN now() ELSE users.updated_at END
       RETURNING id, roles, disabled, (xmax = 0) AS created`,
      [issuer, subject, email, displayName, groups],
    );
    const [row] = rows;
    if (row.created) this.logger.info({ userId: row.id, issuer }, 'user created on first sign-in');
    return Object.assign(new UserEntity(), { id: row.id, issuer, subject, email, displayName, groups, roles: row.roles, disabled: row.disabled });
  }

  /** The id of the user with this identity (issuer + subject), or undefined; creates nothing. For sign-in (src/login). */
  async idByIdentity(issuer: string, subject: string): Promise<string | undefined> {
    const [row] = await this.repo.query<{ id: string }[]>('SELECT id FROM users WHERE issuer = $1 AND subject = $2', [issuer, subject]);
    return row?.id;
  }

  /**
   * Creates a user that no identity provider introduced (a local account, src/login) and returns
   * its id; `409 conflict` naming `field` when the identity is taken. Runs in `em` when given (the
   * caller's transaction). Fields must be PostgreSQL-safe (validated by the caller's schema).
   */
  async create(fields: { issuer: string; subject: string; email: string | null; displayName: string | null; roles: string[] }, field: string, em?: EntityManager): Promise<string> {
    const rows = await (em ?? this.repo.manager).query<{ id: string }[]>(
      `INSERT INTO users (issuer, subject, email, display_name, roles) VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (issuer, subject) DO NOTHING RETURNING id`,
      [fields.issuer, fields.subject, fields.email, fields.displayName, fields.roles],
    );
    if (!rows[0]) throw new AppError(ErrorCode.Conflict, `${field} "${fields.subject}" is taken`, { details: { field } });
    return rows[0].id;
  }

  /**
   * Writes roles and groups an identity provider vouched for at sign-in (src/login: groups, and
   * the roles GATEHOUSE_LOGIN_GROUP_ROLES manages). Not an admin action, so no permission checks.
   * `change` receives the locked row's values and returns the new ones; nothing is written when
   * they are equal. The row and `users.changed` commit together; this replica's copies are dropped.
   */
  async applyClaims(userId: string, change: (current: { roles: string[]; groups: string[] }) => { roles: string[]; groups: string[] }): Promise<void> {
    const same = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join('\u0000') === [...b].sort().join('\u0000');
    const changed = await this.repo.manager.transaction(async (em) => {
      const [row] = await em.query<{ roles: string[]; groups: string[] }[]>('SELECT roles, groups FROM users WHERE id = $1 FOR UPDATE', [userId]);
      if (!row) return false;
      const next = change(row);
      const groups = next.groups.map((g) => toPgSafe(g));
      if (same(next.roles, row.roles) && same(groups, row.groups)) return false;
      await em.query('UPDATE users SET roles = $2, groups = $3, updated_at = now() WHERE id = $1', [userId, next.roles, groups]);
      await this.bus.publish(USERS_CHANGED, { id: userId }, em);
      return true;
    });
    if (!changed) return;
    this.identities.invalidateWhere((_key, user) => user.id === userId);
    this.users.invalidate(userId);
    for (const listener of this.changeListeners) listener(userId);
  }

  async list(query: unknown): Promise<{ items: UserView[]; total: number }> {
    const { limit, offset } = parseBody(listUsersQuery, query);
    const [rows, total] = await this.repo.findAndCount({ order: { createdAt: 'ASC' }, take: limit, skip: offset });
    return { items: rows.map(toView), total };
  }

  /**
   * Changes roles or `disabled` (404 unknown id, 409 for disabling yourself or dropping your own
   * admin role, 403 for granting `admin` without holding `servers:write`, which that role carries). The row and its `users.changed` event commit together, so no replica misses a
   * committed change. Disabling then ends the user's sessions (and their keys') everywhere; a
   * failure there is logged, not answered, since the change itself committed (and a disabled
   * user's credentials are refused anyway).
   */
  async patch(id: string, body: unknown, actor: Principal): Promise<UserView> {
    const input = parseBody(patchUserSchema, body);
    if (!isUuid(id)) throw new AppError(ErrorCode.NotFound, `user "${id}" does not exist`);
    const saved = await this.repo.manager.transaction(async (em) => {
      const user = await em.findOne(UserEntity, { where: { id }, lock: { mode: 'pessimistic_write' } });
      if (!user) throw new AppError(ErrorCode.NotFound, `user "${id}" does not exist`);
      if (actor.userId === id && (input.disabled === true || (input.roles && !input.roles.includes('admin') && user.roles.includes('admin')))) {
        throw new AppError(ErrorCode.Conflict, 'you cannot disable yourself or remove your own admin role; ask another admin', {
          details: { field: input.disabled === true ? 'disabled' : 'roles' },
        });
      }
      // The admin role carries servers:write (running commands on the host): only a holder may grant it.
      if (input.roles?.includes('admin') && !user.roles.includes('admin') && !holds(actor, 'servers:write')) {
        throw new AppError(ErrorCode.Forbidden, 'roles: granting "admin" requires the "servers:write" permission, which you do not hold', {
          details: { field: 'roles' },
        });
      }
      em.merge(UserEntity, user, input);
      const row = await em.save(user);
      await this.bus.publish(USERS_CHANGED, { id }, em);
      return row;
    });
    // This replica's next request sees the change at once, before the notification arrives.
    this.identities.invalidateWhere((_key, user) => user.id === id);
    this.users.invalidate(id);
    for (const listener of this.changeListeners) listener(id);
    if (input.disabled === true) {
      try {
        const acting = (await Promise.all(this.principalSources.map((source) => source(id)))).flat();
        const ended = await this.sessions.closeForPrincipals([userPrincipalId(id), ...acting]);
        this.logger.info({ userId: id, sessions: ended }, 'user disabled; sessions ended');
      } catch (error) {
        this.logger.error({ err: error, userId: id }, 'user disabled, but ending their sessions failed; their credentials are refused anyway');
      }
    }
    return toView(saved);
  }
}
