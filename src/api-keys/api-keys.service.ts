import { Inject, Injectable, type BeforeApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { LRUCache } from 'lru-cache';
import { PinoLogger } from 'nestjs-pino';
import { Repository, type EntityManager } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { isUuid } from '../common/validation/uuid.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { ReplicatedCache } from '../database/replicated-cache.js';
import { SessionsService } from '../sessions/sessions.service.js';
import type { UserEntity } from '../users/user.entity.js';
import { UsersService, apiKeyPrincipalId } from '../users/users.service.js';
import { PERMISSIONS, holds, permissionsFor, type Principal } from '../auth/principal.js';
import { ApiKeyEntity } from './api-key.entity.js';
import { digestsEqual, displayPrefix, generateApiKey, hashApiKey } from './api-key-format.js';
import { createApiKeySchema } from './api-keys.schema.js';
import { API_KEYS_CHANGED } from './api-keys.topics.js';

export { API_KEYS_CHANGED };
/** Backstop (ms) on trusting a cached key without a bus event. */
const CACHE_MS = 60_000;
const LAST_USED_EVERY_MS = 60_000;
const MAX_CACHED = 50_000;
/** Hashes presented that match no key: kept apart, so a spray of random keys evicts no valid entry. */
const MAX_UNKNOWN = 10_000;
/** Presented keys whose keyed hash is remembered ({@link ApiKeysService} `hashes`): at most this many, each at most {@link CACHE_MS}. */
const MAX_HASHED = 1_000;

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
  /** The key that created this one (revoked with it), if a stored key did. */
  createdByKeyId: string | null;
  createdAt: string;
}

export type KeyCheck = { principal: Principal } | { problem: string };

/** A key's row as verification needs it (immutable; replaced on reload). */
interface KeyRecord {
  id: string;
  name: string;
  userId: string | null;
  role: 'admin' | 'member';
  scopes: string[];
  /** Expiry (ms since the epoch), re-checked on every use of the cached entry. */
  expiresAt: number | null;
  revoked: boolean;
}

interface KeyRow {
  id: string;
  name: string;
  user_id: string | null;
  role: 'admin' | 'member';
  scopes: string[];
  expires_at: Date | null;
  revoked_at: Date | null;
}

/** No key has this hash (the loader's way to say so; nothing is cached in the positive cache). */
class UnknownKeyHash extends Error {}

const NOT_VALID: KeyCheck = Object.freeze({ problem: 'the API key is not valid' });

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
    createdByKeyId: k.createdByKeyId ?? null,
    createdAt: k.createdAt.toISOString(),
  };
}

/** The principal an active key acts as: its role, capped by its owner's current role. */
function keyPrincipal(key: KeyRecord, owner: UserEntity | null): Principal {
  const ownerIsAdmin = key.userId === null || (owner?.roles ?? []).includes('admin');
  const role = key.role === 'admin' && ownerIsAdmin ? 'admin' : 'member';
  const allowed = permissionsFor([role]);
  return {
    userId: key.userId,
    id: apiKeyPrincipalId(key.id),
    displayName: owner?.displayName ? `${owner.displayName} (key ${key.name})` : `key ${key.name}`,
    email: owner?.email ?? null,
    roles: [role],
    groups: owner?.groups ?? [],
    scopes: key.scopes.filter((s) => (allowed as string[]).includes(s)),
    method: 'api_key',
    keyId: key.id,
    credentialExpiresAt: key.expiresAt,
  };
}

/**
 * The identity of a static `MCP_API_KEYS` key: `static-` + the first 12 hex digits of its keyed
 * hash (`hash` = {@link hashApiKey}). Derived from the key, not its position in the list, so
 * reordering the list never hands one key's secrets, sessions or policies to another; changing
 * `GATEHOUSE_API_KEY_PEPPER` changes it.
 */
export function staticKeyId(hash: string): string {
  return `static-${hash.slice(0, 12)}`;
}

/** Persists a new key; shared by the API and `node dist/cli.js create-admin-key`. */
export async function insertApiKey(
  repo: Repository<ApiKeyEntity>,
  pepper: string,
  input: { name: string; role: 'admin' | 'member'; scopes: string[]; expiresAt: Date | null; userId: string | null; createdBy: string; createdByKeyId?: string | null },
): Promise<{ key: string; row: ApiKeyEntity }> {
  const key = generateApiKey();
  const row = await repo.save(repo.create({ ...input, prefix: displayPrefix(key), keyHash: hashApiKey(key, pepper) }));
  return { key, row };
}

/**
 * API keys: generated here (shown once), stored as a keyed hash, verified from a per-replica
 * {@link ReplicatedCache} (no database round-trip per request), `last_used_at` written at most
 * once a minute. Revocation commits together with its `api_keys.changed` event, is effective on
 * every replica within a second, and a verification racing it is never cached as valid; it
 * also ends the key's MCP sessions. The owner's roles and profile come from
 * `UsersService.byId` (cached there, dropped on `users.changed`). Static keys from
 * `MCP_API_KEYS` are checked in memory, in constant time.
 */
@Injectable()
export class ApiKeysService implements OnModuleInit, BeforeApplicationShutdown {
  /** Keys found, by hash (revoked ones too: they answer "revoked"). */
  private readonly keys: ReplicatedCache<string, KeyRecord>;
  /** Hashes that match no key; never holds a real key, so it needs no invalidation. */
  private readonly unknown = new LRUCache<string, true>({ max: MAX_UNKNOWN, ttl: CACHE_MS });
  /** The principal last built for a key record and its owner object (both immutable while cached). */
  private readonly principals = new WeakMap<KeyRecord, { owner: UserEntity | null; principal: Principal }>();
  private readonly lastUsedWritten = new Map<string, number>();
  private readonly staticKeys: { hash: string; principal: Principal }[];
  /**
   * The keyed hash of recently verified keys, by the presented key (with the static key's
   * principal when it is one of MCP_API_KEYS), so a client sending the same key on every
   * request costs one map read instead of an HMAC-SHA-256 and the constant-time comparisons.
   * It maps a key to its hash only — a function of the key and the pepper, both fixed for the
   * process —, never to a verdict: revocation, expiry and the owner's state are checked on the
   * key's record on every request, as without it. Only keys that matched a static key or a
   * stored record enter it (never a guessed or mistyped string), at most {@link MAX_HASHED},
   * each for at most {@link CACHE_MS}; it is never serialized, logged or exposed, and is cleared
   * at shutdown. Holding presented keys in memory adds no exposure the process does not
   * already have: it holds the pepper, MCP_API_KEYS and every in-flight request's key. The
   * lookup compares strings only on an equal (process-seeded) V8 string hash, so the timing of
   * a miss reveals nothing about remembered keys (docs/auth.md, `api_key`).
   */
  private readonly hashes = new LRUCache<string, { hash: string; fixed: Principal | undefined }>({ max: MAX_HASHED, ttl: CACHE_MS, ttlResolution: 0 });

  constructor(
    @InjectRepository(ApiKeyEntity) private readonly repo: Repository<ApiKeyEntity>,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly bus: ChangeBusService,
    private readonly sessions: SessionsService,
    private readonly logger: PinoLogger,
    private readonly users: UsersService,
  ) {
    logger.setContext('ApiKeys');
    this.keys = new ReplicatedCache<string, KeyRecord>({ name: 'api-keys', max: MAX_CACHED, ttlMs: CACHE_MS, load: (hash) => this.load(hash) }, bus).invalidateOn(
      API_KEYS_CHANGED,
      ({ id }) => ({ where: (_hash, key) => key.id === id }),
    );
    const hashes = [...new Set(config.auth.staticApiKeys.map((key) => hashApiKey(key, config.auth.apiKeyPepper)))];
    this.staticKeys = hashes.map((hash) => {
      const keyId = staticKeyId(hash);
      return {
        hash,
        principal: {
          userId: null,
          id: apiKeyPrincipalId(keyId),
          displayName: `MCP_API_KEYS ${keyId}`,
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

  onModuleInit(): void {
    // Disabling a user ends the sessions of their keys too.
    this.users.addPrincipalSource(async (userId) => (await this.idsOwnedBy(userId)).map(apiKeyPrincipalId));
  }

  beforeApplicationShutdown(): void {
    this.keys.dispose();
    this.unknown.clear();
    this.hashes.clear();
  }

  /** Whether `key` is one of the static MCP_API_KEYS (they need not have the gatehouse_ shape). */
  isStaticKey(key: string): boolean {
    if (this.staticKeys.length === 0) return false;
    const known = this.hashes.get(key);
    return (known ? known.fixed : this.staticMatch(hashApiKey(key, this.config.auth.apiKeyPepper))) !== undefined;
  }

  /**
   * The principal for a presented key, or why it is refused (unknown, revoked, expired, owner
   * disabled). Synchronous when everything it needs is in memory (the key's hash, its record,
   * its owner), a promise otherwise. Throws (or rejects) only if the database fails.
   */
  verify(key: string): KeyCheck | Promise<KeyCheck> {
    const known = this.hashes.get(key);
    if (known?.fixed) return { principal: known.fixed };
    const hash = known ? known.hash : hashApiKey(key, this.config.auth.apiKeyPepper);
    if (!known) {
      const fixed = this.staticMatch(hash);
      if (fixed) {
        this.hashes.set(key, { hash, fixed });
        return { principal: fixed };
      }
    }
    const record = this.keys.peek(hash);
    if (!record) return this.loadAndCheck(key, hash, known !== undefined);
    if (!known) this.hashes.set(key, { hash, fixed: undefined });
    return this.check(record);
  }

  /** {@link verify} for a key whose record is not cached: loads it (an unknown hash is remembered apart). */
  private async loadAndCheck(key: string, hash: string, known: boolean): Promise<KeyCheck> {
    if (this.unknown.get(hash)) return NOT_VALID;
    let record: KeyRecord;
    try {
      record = await this.keys.get(hash);
    } catch (error) {
      if (!(error instanceof UnknownKeyHash)) throw error;
      this.unknown.set(hash, true);
      this.hashes.delete(key);
      return NOT_VALID;
    }
    if (!known) this.hashes.set(key, { hash, fixed: undefined });
    return this.check(record);
  }

  /** A stored key's verdict from its record and its owner (read from the users cache, waited for only when not cached). */
  private check(record: KeyRecord): KeyCheck | Promise<KeyCheck> {
    if (record.revoked) return { problem: 'the API key has been revoked' };
    const now = Date.now();
    if (record.expiresAt !== null && record.expiresAt <= now) return { problem: 'the API key has expired' };
    if (record.userId === null) return this.admit(record, null, now);
    const owner = this.users.cachedById(record.userId);
    return owner !== undefined ? this.admit(record, owner, now) : this.users.byId(record.userId).then((loaded) => this.admit(record, loaded, now));
  }

  /** The principal of an unrevoked, unexpired key whose owner (null for none) is `owner`; `now` in ms. */
  private admit(record: KeyRecord, owner: UserEntity | null, now: number): KeyCheck {
    if (record.userId !== null && !owner) return NOT_VALID;
    if (owner?.disabled) return { problem: "the API key's owner is disabled" };
    let memo = this.principals.get(record);
    if (memo?.owner !== owner) this.principals.set(record, (memo = { owner, principal: keyPrincipal(record, owner) }));
    this.touch(record.id, now);
    return { principal: memo.principal };
  }

  /** Ids of the keys `userId` owns, revoked ones included. */
  async idsOwnedBy(userId: string): Promise<string[]> {
    return (await this.repo.find({ select: { id: true }, where: { userId } })).map((k) => k.id);
  }

  /**
   * Creates a key owned by `creator`; returns it once, with its view. A key never exceeds or
   * outlives the credential that creates it: its role and scopes are within the creator's
   * (403 naming the field), and its expiry is at most the creator's (`credentialExpiresAt`: a
   * JWT's `exp`, a key's `expires_at`) — without `expiresAt` it gets the creator's expiry,
   * a later one or `null` is a 400 naming `expiresAt` and the limit. A key created by a stored
   * key records it (`createdByKeyId`) and is revoked with it. The anonymous principal of
   * strategy `none` may not mint keys (403): they would belong to nobody and outlive a switch
   * to real authentication.
   */
  async create(body: unknown, creator: Principal): Promise<ApiKeyView & { key: string }> {
    if (creator.method === 'none') {
      throw new AppError(
        ErrorCode.Forbidden,
        'API keys need a real principal: without authentication (MCP_AUTH_STRATEGY=none) a key would belong to nobody and outlive a switch to real authentication; create one with `node dist/cli.js create-admin-key --name NAME`',
      );
    }
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
    const cap = creator.credentialExpiresAt ?? null;
    const expiresAt = input.expiresAt === undefined ? (cap === null ? null : new Date(cap)) : input.expiresAt === null ? null : new Date(input.expiresAt);
    if (cap !== null && (expiresAt === null || expiresAt.getTime() > cap)) {
      const limit = new Date(cap).toISOString();
      throw new AppError(ErrorCode.ValidationFailed, `expiresAt: expected ${limit} or earlier (when the credential creating this key expires), got ${expiresAt?.toISOString() ?? 'null (never)'}`, {
        details: { field: 'expiresAt', max: limit },
      });
    }
    const parent = creator.keyId !== null && isUuid(creator.keyId) ? creator.keyId : null;
    const { key, row } = await this.repo.manager.transaction(async (em) => {
      await this.assertRoomForKey(em, creator);
      if (parent) {
        // The creating key and its ancestors, share-locked: a revocation of any of them either
        // committed before (refused here) or waits for this insert and then revokes it too.
        const chain = await em.query<{ revoked_at: Date | null }[]>(
          `SELECT revoked_at FROM api_keys WHERE id IN (
             WITH RECURSIVE up AS (SELECT id, created_by_key_id FROM api_keys WHERE id = $1
               UNION SELECT k.id, k.created_by_key_id FROM api_keys k JOIN up ON k.id = up.created_by_key_id)
             SELECT id FROM up) FOR SHARE`,
          [parent],
        );
        if (chain.length === 0 || chain.some((r) => r.revoked_at !== null)) throw new AppError(ErrorCode.Unauthorized, 'Unauthorized: the API key has been revoked');
      }
      return insertApiKey(em.getRepository(ApiKeyEntity), this.config.auth.apiKeyPepper, {
        name: input.name,
        role: input.role,
        scopes,
        expiresAt,
        userId: creator.userId,
        createdBy: creator.id,
        createdByKeyId: parent,
      });
    });
    this.logger.info({ keyId: row.id, role: row.role, by: creator.id }, 'API key created');
    return { ...toView(row), key };
  }

  /**
   * Bounds the keys one user can hold: with GATEHOUSE_MAX_API_KEYS_PER_USER active (unrevoked,
   * unexpired) keys — owned by the creator's user, or for a creator without a user (static key,
   * `none`) created by that principal — a new one is 409 naming the limit and the setting.
   * Checked before the insert, not under a lock: concurrent creations by one user may overshoot
   * by the number in flight (a bound on storage, not a security boundary).
   */
  /**
   * Refuses (409) a key beyond GATEHOUSE_MAX_API_KEYS_PER_USER active keys of the creator's user
   * (or, for keys without a user, of the creating principal). Runs in the inserting transaction
   * under a transaction-scoped advisory lock on the owner, so concurrent creations cannot
   * both pass the count.
   */
  private async assertRoomForKey(em: EntityManager, creator: Principal): Promise<void> {
    const max = this.config.auth.maxApiKeysPerUser;
    const owner = creator.userId ?? creator.id;
    await em.query("SELECT pg_advisory_xact_lock(hashtext('gatehouse:api-keys:' || $1))", [owner]);
    const [{ active }] = await em.query<[{ active: number }]>(
      `SELECT count(*)::int AS active FROM api_keys
        WHERE ${creator.userId ? 'user_id = $1' : 'user_id IS NULL AND created_by = $1'} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())`,
      [owner],
    );
    if (active >= max) {
      throw new AppError(ErrorCode.Conflict, `you already have ${active} active API keys, the maximum (GATEHOUSE_MAX_API_KEYS_PER_USER=${max}); revoke one first`, {
        details: { limit: max, setting: 'GATEHOUSE_MAX_API_KEYS_PER_USER' },
      });
    }
  }

  /** Keys visible to `viewer`: admins (admin:read) see all, everyone else their own. */
  async list(viewer: Principal): Promise<ApiKeyView[]> {
    if (holds(viewer, 'admin:read')) return (await this.repo.find({ order: { createdAt: 'ASC' } })).map(toView);
    if (!viewer.userId) return [];
    return (await this.repo.find({ where: { userId: viewer.userId }, order: { createdAt: 'ASC' } })).map(toView);
  }

  /**
   * Revokes a key (owner, or an admin with admin:write): 404 for a missing key or someone
   * else's. The keys it created are revoked with it, and theirs in turn (`created_by_key_id`).
   * The rows and one `api_keys.changed` event per key commit together; then their sessions end
   * everywhere (a failure there is logged: the revocation itself is in force).
   */
  async revoke(id: string, actor: Principal): Promise<void> {
    const row = isUuid(id) ? await this.repo.findOneBy({ id }) : null;
    const mayRevoke = row && (holds(actor, 'admin:write') || (actor.userId !== null && row.userId === actor.userId));
    // Someone else's key answers like a missing one: ids are not confirmed to non-owners.
    if (!row || !mayRevoke) throw new AppError(ErrorCode.NotFound, `API key "${id}" does not exist`);
    const ids = await this.repo.manager.transaction(async (em) => {
      // Lock the tree first (waits for a key being minted by one of them, see create), then
      // revoke it in a new statement, whose snapshot includes that key.
      await em.query(
        `SELECT id FROM api_keys WHERE id IN (
           WITH RECURSIVE minted AS (SELECT id FROM api_keys WHERE id = $1
             UNION SELECT k.id FROM api_keys k JOIN minted m ON k.created_by_key_id = m.id)
           SELECT id FROM minted) FOR UPDATE`,
        [id],
      );
      const [rows] = await em.query<[{ id: string }[], number]>(
        `WITH RECURSIVE minted AS (
           SELECT id FROM api_keys WHERE id = $1
           UNION SELECT k.id FROM api_keys k JOIN minted m ON k.created_by_key_id = m.id
         )
         UPDATE api_keys SET revoked_at = now() WHERE id IN (SELECT id FROM minted) AND revoked_at IS NULL RETURNING id`,
        [id],
      );
      const revoked = new Set([id, ...rows.map((r) => r.id)]);
      for (const keyId of revoked) await this.bus.publish(API_KEYS_CHANGED, { id: keyId }, em);
      return revoked;
    });
    this.keys.invalidateWhere((_hash, key) => ids.has(key.id));
    try {
      const ended = await this.sessions.closeForPrincipals([...ids].map(apiKeyPrincipalId));
      this.logger.info({ keyId: id, minted: [...ids].filter((k) => k !== id), by: actor.id, sessions: ended }, 'API key revoked');
    } catch (error) {
      this.logger.error({ err: error, keyId: id, by: actor.id }, 'API key revoked, but ending its sessions failed; the key is refused anyway');
    }
  }

  private staticMatch(hash: string): Principal | undefined {
    if (this.staticKeys.length === 0) return undefined;
    let found: Principal | undefined;
    // Compare against every static key, in constant time, whatever matches first.
    for (const k of this.staticKeys) if (digestsEqual(k.hash, hash)) found = k.principal;
    return found;
  }

  private async load(hash: string): Promise<KeyRecord> {
    const [row] = await this.repo.query<KeyRow[]>('SELECT id, name, user_id, role, scopes, expires_at, revoked_at FROM api_keys WHERE key_hash = $1', [hash]);
    if (!row) throw new UnknownKeyHash();
    return {
      id: row.id,
      name: row.name,
      userId: row.user_id,
      role: row.role,
      scopes: row.scopes,
      expiresAt: row.expires_at?.getTime() ?? null,
      revoked: row.revoked_at !== null,
    };
  }

  private touch(keyId: string, now: number): void {
    if (now - (this.lastUsedWritten.get(keyId) ?? 0) < LAST_USED_EVERY_MS) return;
    this.lastUsedWritten.set(keyId, now);
    void this.repo.update({ id: keyId }, { lastUsedAt: new Date(now) }).catch((error: unknown) => this.logger.warn({ err: error, keyId }, 'could not record key use'));
  }
}
