import { Inject, Injectable, type BeforeApplicationShutdown, type OnApplicationBootstrap } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { Repository } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { isUuid } from '../common/validation/uuid.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { RESYNC_TOPIC } from '../database/change-bus.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { SessionsService } from '../sessions/sessions.service.js';
import { USERS_CHANGED, apiKeyPrincipalId } from '../users/users.service.js';
import { PERMISSIONS, holds, permissionsFor, type Principal } from '../auth/principal.js';
import { ApiKeyEntity } from './api-key.entity.js';
import { digestsEqual, displayPrefix, generateApiKey, hashApiKey } from './api-key-format.js';
import { createApiKeySchema } from './api-keys.schema.js';

/** Bus topic: `{ id }` of a key that was revoked; every replica drops it from its cache. */
export const API_KEYS_CHANGED = 'api_keys.changed';
const CACHE_MS = 60_000;
const LAST_USED_EVERY_MS = 60_000;
const MAX_CACHED = 50_000;

export interface ApiKeyView {
  id: string;
  name: string;
  /** The first characters of the key, to tell keys apart; the key itself is never shown again. */
  prefix: string;
  userId: string | null;
  role: string;
  scopes: string[];
  expiresAt: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  createdBy: string;
  createdAt: string;
}

export type KeyCheck = { principal: Principal } | { problem: string };

interface Cached {
  keyId: string;
  ownerId: string | null;
  check: KeyCheck;
  /** Key expiry (ms), re-checked on every use of the cached entry. */
  expiresAt: number | null;
  at: number;
}

interface KeyRow {
  id: string;
  name: string;
  user_id: string | null;
  role: 'admin' | 'member';
  scopes: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
  owner_disabled: boolean | null;
  owner_roles: string[] | null;
  owner_groups: string[] | null;
  owner_email: string | null;
  owner_name: string | null;
}

function toView(k: ApiKeyEntity): ApiKeyView {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    userId: k.userId,
    role: k.role,
    scopes: k.scopes,
    expiresAt: k.expiresAt?.toISOString() ?? null,
    lastUsedAt: k.lastUsedAt?.toISOString() ?? null,
    revokedAt: k.revokedAt?.toISOString() ?? null,
    createdBy: k.createdBy,
    createdAt: k.createdAt.toISOString(),
  };
}

/** The principal an active key acts as: its role, capped by its owner's current role. */
function keyPrincipal(row: KeyRow): Principal {
  const ownerIsAdmin = row.user_id === null || (row.owner_roles ?? []).includes('admin');
  const role = row.role === 'admin' && ownerIsAdmin ? 'admin' : 'member';
  const allowed = permissionsFor([role]);
  return {
    userId: row.user_id,
    id: apiKeyPrincipalId(row.id),
    displayName: row.owner_name ? `${row.owner_name} (key ${row.name})` : `key ${row.name}`,
    email: row.owner_email,
    roles: [role],
    groups: row.owner_groups ?? [],
    scopes: row.scopes.filter((s) => (allowed as string[]).includes(s)),
    method: 'api_key',
    keyId: row.id,
  };
}

/** Persists a new key; shared by the API and `node dist/cli.js create-admin-key`. */
export async function insertApiKey(
  repo: Repository<ApiKeyEntity>,
  pepper: string,
  input: { name: string; role: 'admin' | 'member'; scopes: string[]; expiresAt: Date | null; userId: string | null; createdBy: string },
): Promise<{ key: string; row: ApiKeyEntity }> {
  const key = generateApiKey();
  const row = await repo.save(repo.create({ ...input, prefix: displayPrefix(key), keyHash: hashApiKey(key, pepper) }));
  return { key, row };
}

/**
 * API keys: generated here (shown once), stored as a keyed hash, verified from a per-replica
 * cache (no database round-trip per request), `last_used_at` written at most once a minute,
 * revocation effective on every replica within a second (change bus) and ending the key's
 * MCP sessions. Static keys from `MCP_API_KEYS` are checked in memory, in constant time.
 */
@Injectable()
export class ApiKeysService implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly cache = new Map<string, Cached>();
  private readonly lastUsedWritten = new Map<string, number>();
  private readonly staticKeys: { hash: string; principal: Principal }[];
  private readonly unsubscribe: (() => void)[] = [];

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly repo: Repository<ApiKeyEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('ApiKeys');
    this.staticKeys = config.auth.staticApiKeys.map((key, index) => {
      const hash = hashApiKey(key, config.auth.apiKeyPepper);
      const keyId = `static-${index + 1}`;
      return {
        hash,
        principal: {
          userId: null,
          id: apiKeyPrincipalId(keyId),
          displayName: `MCP_API_KEYS #${index + 1}`,
          email: null,
          roles: ['admin'],
          groups: [],
          scopes: [...PERMISSIONS],
          method: 'api_key',
          keyId,
        },
      };
    });
  }

  onApplicationBootstrap(): void {
    const drop = (match: (c: Cached) => boolean) => {
      for (const [hash, entry] of this.cache) if (match(entry)) this.cache.delete(hash);
    };
    this.unsubscribe.push(
      this.bus.subscribe<{ id?: string }>(API_KEYS_CHANGED, (e) => drop((c) => c.keyId === e.data?.id)),
      this.bus.subscribe<{ id?: string }>(USERS_CHANGED, (e) => drop((c) => c.ownerId !== null && c.ownerId === e.data?.id)),
      this.bus.subscribe(RESYNC_TOPIC, () => this.cache.clear()),
    );
  }

  beforeApplicationShutdown(): void {
    for (const off of this.unsubscribe.splice(0)) off();
  }

  /** Whether `key` is one of the static MCP_API_KEYS (they need not have the gatehouse_ shape). */
  isStaticKey(key: string): boolean {
    return this.staticKeys.length > 0 && this.staticMatch(hashApiKey(key, this.config.auth.apiKeyPepper)) !== undefined;
  }

  /** The principal for a presented key, or why it is refused. */
  async verify(key: string): Promise<KeyCheck> {
    const hash = hashApiKey(key, this.config.auth.apiKeyPepper);
    const fixed = this.staticMatch(hash);
    if (fixed) return { principal: fixed };
    const now = Date.now();
    let entry = this.cache.get(hash);
    if (!entry || now - entry.at >= CACHE_MS) {
      entry = await this.load(hash, now);
      if (this.cache.size >= MAX_CACHED) this.cache.delete(this.cache.keys().next().value as string);
      this.cache.set(hash, entry);
    }
    if (entry.expiresAt !== null && entry.expiresAt <= now) return { problem: 'the API key has expired' };
    if ('principal' in entry.check) this.touch(entry.keyId, now);
    return entry.check;
  }

  /** Creates a key owned by `creator`; returns it once, with its view. */
  async create(body: unknown, creator: Principal): Promise<ApiKeyView & { key: string }> {
    const input = parseBody(createApiKeySchema, body);
    if (input.role === 'admin' && !holds(creator, 'admin:write')) {
      throw new AppError(ErrorCode.Forbidden, 'only admins may create admin keys; use role "member"', { details: { field: 'role' } });
    }
    const scopes = input.scopes ?? permissionsFor([input.role]);
    const beyondRole = scopes.filter((s) => !(permissionsFor([input.role]) as string[]).includes(s));
    if (beyondRole.length > 0) {
      throw new AppError(ErrorCode.ValidationFailed, `scopes: ${beyondRole.join(', ')} not available to role "${input.role}"`, { details: { field: 'scopes' } });
    }
    const beyondCreator = scopes.filter((s) => !holds(creator, s));
    if (beyondCreator.length > 0) {
      throw new AppError(ErrorCode.Forbidden, `scopes: you do not hold ${beyondCreator.join(', ')} yourself`, { details: { field: 'scopes' } });
    }
    const { key, row } = await insertApiKey(this.repo, this.config.auth.apiKeyPepper, {
      name: input.name,
      role: input.role,
      scopes,
      expiresAt: input.expiresAt ? new Date(input.expiresAt) : null,
      userId: creator.userId,
      createdBy: creator.id,
    });
    this.logger.info({ keyId: row.id, role: row.role, by: creator.id }, 'API key created');
    return { ...toView(row), key };
  }

  /** Keys visible to `viewer`: admins (admin:read) see all, everyone else their own. */
  async list(viewer: Principal): Promise<ApiKeyView[]> {
    if (holds(viewer, 'admin:read')) return (await this.repo.find({ order: { createdAt: 'ASC' } })).map(toView);
    if (!viewer.userId) return [];
    return (await this.repo.find({ where: { userId: viewer.userId }, order: { createdAt: 'ASC' } })).map(toView);
  }

  /** Revokes a key (owner, or an admin with admin:write) and ends its sessions everywhere. */
  async revoke(id: string, actor: Principal): Promise<void> {
    const row = isUuid(id) ? await this.repo.findOneBy({ id }) : null;
    const mayRevoke = row && (holds(actor, 'admin:write') || (actor.userId !== null && row.userId === actor.userId));
    // Someone else's key answers like a missing one: ids are not confirmed to non-owners.
    if (!row || !mayRevoke) throw new AppError(ErrorCode.NotFound, `API key "${id}" does not exist`);
    if (!row.revokedAt) await this.repo.update({ id }, { revokedAt: new Date() });
    for (const [hash, entry] of this.cache) if (entry.keyId === id) this.cache.delete(hash);
    await this.bus.publish(API_KEYS_CHANGED, { id });
    const ended = await this.sessions.closeForPrincipals([apiKeyPrincipalId(id)]);
    this.logger.info({ keyId: id, by: actor.id, sessions: ended }, 'API key revoked');
  }

  private staticMatch(hash: string): Principal | undefined {
    if (this.staticKeys.length === 0) return undefined;
    let found: Principal | undefined;
    // Compare against every static key, in constant time, whatever matches first.
    for (const k of this.staticKeys) if (digestsEqual(k.hash, hash)) found = k.principal;
    return found;
  }

  private async load(hash: string, now: number): Promise<Cached> {
    const rows = await this.repo.query<KeyRow[]>(
      `SELECT k.id, k.name, k.user_id, k.role, k.scopes, k.expires_at, k.revoked_at,
              u.disabled AS owner_disabled, u.roles AS owner_roles, u.groups AS owner_groups, u.email AS owner_email, u.display_name AS owner_name
         FROM api_keys k LEFT JOIN users u ON u.id = k.user_id
        WHERE k.key_hash = $1`,
      [hash],
    );
    const [row] = rows;
    if (!row) return { keyId: '', ownerId: null, check: { problem: 'the API key is not valid' }, expiresAt: null, at: now };
    const base = { keyId: row.id, ownerId: row.user_id, expiresAt: row.expires_at?.getTime() ?? null, at: now };
    if (row.revoked_at) return { ...base, check: { problem: 'the API key has been revoked' } };
    if (row.owner_disabled) return { ...base, check: { problem: "the API key's owner is disabled" } };
    return { ...base, check: { principal: keyPrincipal(row) } };
  }

  private touch(keyId: string, now: number): void {
    if (now - (this.lastUsedWritten.get(keyId) ?? 0) < LAST_USED_EVERY_MS) return;
    this.lastUsedWritten.set(keyId, now);
    void this.repo.update({ id: keyId }, { lastUsedAt: new Date(now) }).catch((error: unknown) => this.logger.warn({ err: error, keyId }, 'could not record key use'));
  }
}
