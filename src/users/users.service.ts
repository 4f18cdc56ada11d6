import { Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { Repository } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { isUuid } from '../common/validation/uuid.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { SessionsService } from '../sessions/sessions.service.js';
import type { Principal } from '../auth/principal.js';
import { UserEntity } from './user.entity.js';
import { listUsersQuery, patchUserSchema } from './users.schema.js';

/** Bus topic: `{ id }` of a user whose roles or `disabled` changed; replicas drop their copy. */
export const USERS_CHANGED = 'users.changed';
/** Re-read a cached user (and write `last_seen_at`) at most this often. */
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

interface Cached {
  user: UserEntity;
  /** The claims last written, so changed claims are written on the next request. */
  claims: string;
  at: number;
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
 * Users: created on first sight from an identity (issuer + subject), kept in a per-replica
 * cache so an authenticated request costs no database round-trip, and managed by admins
 * (roles, disabled). Disabling a user ends their MCP sessions on every replica.
 */
@Injectable()
export class UsersService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly cache = new Map<string, Cached>();
  private readonly unsubscribe: (() => void)[] = [];
  private changes = 0;

  /** Bumped whenever any user's roles or `disabled` may have changed: caches built on users compare it. */
  get version(): number {
    return this.changes;
  }

  constructor(
    @InjectRepository(UserEntity) private readonly repo: Repository<UserEntity>,
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Users');
  }

  onApplicationBootstrap(): void {
    this.unsubscribe.push(
      this.bus.subscribe<{ id?: string }>(USERS_CHANGED, (event) => {
        this.changes++;
        for (const [key, entry] of this.cache) if (entry.user.id === event.data?.id) this.cache.delete(key);
      }),
      this.bus.subscribe(RESYNC_TOPIC, () => {
        this.changes++;
        this.cache.clear();
      }),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** The user behind `identity`, created on first sight; claims refreshed at most once a minute. */
  async resolve(identity: Identity): Promise<UserEntity> {
    const key = `${identity.issuer}\n${identity.subject}`;
    const claims = JSON.stringify([identity.email, identity.displayName, identity.groups]);
    const now = Date.now();
    const cached = this.cache.get(key);
    if (cached && cached.claims === claims && now - cached.at < REFRESH_MS) return cached.user;
    const rows = await this.repo.query<{ id: string; roles: string[]; disabled: boolean; created: boolean }[]>(
      `INSERT INTO users (issuer, subject, email, display_name, groups, last_seen_at)
       VALUES ($1, $2, $3, $4, $5, now())
       ON CONFLICT (issuer, subject) DO UPDATE
         SET email = EXCLUDED.email, display_name = EXCLUDED.display_name, groups = EXCLUDED.groups, last_seen_at = now(),
             updated_at = CASE WHEN (users.email, users.display_name, users.groups) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.display_name, EXCLUDED.groups)
                               THEN now() ELSE users.updated_at END
       RETURNING id, roles, disabled, (xmax = 0) AS created`,
      [identity.issuer, identity.subject, identity.email, identity.displayName, identity.groups],
    );
    const [row] = rows;
    if (row.created) this.logger.info({ userId: row.id, issuer: identity.issuer }, 'user created on first sign-in');
    const user = Object.assign(new UserEntity(), {
      id: row.id,
      issuer: identity.issuer,
      subject: identity.subject,
      email: identity.email,
      displayName: identity.displayName,
      groups: identity.groups,
      roles: row.roles,
      disabled: row.disabled,
    });
    if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
    this.cache.set(key, { user, claims, at: now });
    return user;
  }

  async list(query: unknown): Promise<{ items: UserView[]; total: number }> {
    const { limit, offset } = parseBody(listUsersQuery, query);
    const [rows, total] = await this.repo.findAndCount({ order: { createdAt: 'ASC' }, take: limit, skip: offset });
    return { items: rows.map(toView), total };
  }

  /** Changes roles or `disabled`; disabling ends the user's sessions (and their keys') everywhere. */
  async patch(id: string, body: unknown, actor: Principal): Promise<UserView> {
    const input = parseBody(patchUserSchema, body);
    const user = isUuid(id) ? await this.repo.findOneBy({ id }) : null;
    if (!user) throw new AppError(ErrorCode.NotFound, `user "${id}" does not exist`);
    if (actor.userId === id && (input.disabled === true || (input.roles && !input.roles.includes('admin') && user.roles.includes('admin')))) {
      throw new AppError(ErrorCode.Conflict, 'you cannot disable yourself or remove your own admin role; ask another admin', {
        details: { field: input.disabled === true ? 'disabled' : 'roles' },
      });
    }
    this.repo.merge(user, input);
    const saved = await this.repo.save(user);
    this.changes++;
    for (const [key, entry] of this.cache) if (entry.user.id === id) this.cache.delete(key);
    await this.bus.publish(USERS_CHANGED, { id });
    if (input.disabled === true) {
      const keys = await this.repo.query<{ id: string }[]>('SELECT id FROM api_keys WHERE user_id = $1', [id]);
      const ended = await this.sessions.closeForPrincipals([userPrincipalId(id), ...keys.map((k) => apiKeyPrincipalId(k.id))]);
      this.logger.info({ userId: id, sessions: ended }, 'user disabled; sessions ended');
    }
    return toView(saved);
  }
}
