import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { InjectRepository } from '@nestjs/typeorm';
import { PinoLogger } from 'nestjs-pino';
import { Repository, type EntityManager } from 'typeorm';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { parseBody } from '../common/validation/parse-body.js';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { ChangeBusService } from '../database/change-bus.service.js';
import { ReplicatedCache } from '../database/replicated-cache.js';
import { UPSTREAMS_CHANGED, UpstreamServersService } from '../upstreams/upstream-servers.service.js';
import type { Principal } from '../auth/principal.js';
import { isUnauthenticated } from '../auth/principal.js';
import { KEY_RING } from './key-ring.provider.js';
import { SecretDecryptError, UnknownKeyError, type KeyRing } from './secret-crypto.js';
import { SecretEntity } from './secret.entity.js';
import { keysUsing } from './placeholders.js';
import { putSecretSchema, secretNameSchema } from './secrets.schema.js';
import { valueProblem, type ValuePlace } from './value-rules.js';
import { SECRETS_CHANGED } from './secrets.topics.js';

/** `owner` of a server-wide secret, shared by every caller who has no own value. */
export const SHARED_OWNER = '*';

export interface SecretView {
  server: string;
  name: string;
  updatedAt: string;
}

/** What one caller's secrets for one server resolve to. */
export interface CallerSecrets {
  values: ReadonlyMap<string, string>;
  /** Names whose row exists but cannot be opened (unknown key id, tampering): never silently empty. */
  unreadable: ReadonlyMap<string, string>;
}

/** Whose secrets a principal uses: its user, else (keys without owner, `none`) the principal itself. */
export function secretOwner(principal: Principal): string | null {
  if (isUnauthenticated(principal)) return null;
  return principal.userId ?? principal.id;
}

const CACHE_MAX = 20_000;
/** Backstop (ms) on trusting decrypted values without a bus event. */
const CACHE_TTL_MS = 10 * 60_000;

/** Cache key of one caller's view of one server (`owner` null: callers without an owner). */
const callerKey = (server: string, owner: string | null): string => `${server}\n${owner ?? ''}`;
const serverOf = (key: string): string => key.slice(0, key.indexOf('\n'));

/**
 * Per-user and server-wide secrets, sealed with AES-256-GCM (key ring from
 * GATEHOUSE_ENCRYPTION_KEYS, additional data = owner, server, name). Write-only through the
 * API: values are only ever decrypted to be injected into an upstream call. Decrypted values
 * are cached per (server, owner) on each replica in a {@link ReplicatedCache}: a write commits
 * together with its `secrets.changed` event, every replica drops what it affects, and a read
 * racing the write never re-caches the old value. A call costs no database round-trip and no
 * decryption in steady state.
 */
@Injectable()
export class SecretsService implements BeforeApplicationShutdown {
  private readonly cache: ReplicatedCache<string, CallerSecrets>;

  constructor(
    @InjectRepository(SecretEntity) private readonly repo: Repository<SecretEntity>,
    @Inject(KEY_RING) private readonly ring: KeyRing,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly upstreams: UpstreamServersService,
    private readonly bus: ChangeBusService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Secrets');
    this.cache = new ReplicatedCache<string, CallerSecrets>(
      {
        name: 'secrets',
        max: CACHE_MAX,
        ttlMs: CACHE_TTL_MS,
        load: (key) => {
          const cut = key.indexOf('\n');
          const owner = key.slice(cut + 1);
          return this.read(key.slice(0, cut), owner === '' ? null : owner);
        },
      },
      bus,
    )
      .invalidateOn(SECRETS_CHANGED, ({ server, owner }) => this.affected(server, owner))
      .invalidateOn(UPSTREAMS_CHANGED, ({ name }) => ({ where: (key) => serverOf(key) === name }));
  }

  beforeApplicationShutdown(): void {
    this.cache.dispose();
  }

  /**
   * Creates or replaces a secret (204). The value is checked for every place the server uses
   * it now (an `env` value cannot hold NUL, a header value no CR/LF/NUL…): a 400
   * `validation_failed` naming `value`, the character class and the place, never the value.
   * Places added later are checked again at call time.
   */
  async put(owner: string, server: string, name: string, body: unknown): Promise<void> {
    parseBody(secretNameSchema, { name });
    const { value } = parseBody(putSecretSchema, body);
    await this.upstreams.get(server); // 404 for an unknown server
    this.checkPlaces(server, name, value);
    const sealed = this.ring.seal(value, { owner, server, name });
    await this.repo.manager.transaction(async (em) => {
      if (owner !== SHARED_OWNER) await this.assertRoomFor(em, owner, server, name);
      await em.query(
        `INSERT INTO secrets (owner, server, name, key_id, nonce, ciphertext) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (owner, server, name) DO UPDATE SET key_id = EXCLUDED.key_id, nonce = EXCLUDED.nonce, ciphertext = EXCLUDED.ciphertext, updated_at = now()`,
        [owner, server, name, sealed.keyId, sealed.nonce, sealed.ciphertext],
      );
      await this.bus.publish(SECRETS_CHANGED, { server, owner }, em);
    });
    this.forget(server, owner);
    this.logger.info({ server, name, owner: owner === SHARED_OWNER ? 'shared' : owner }, 'secret set');
  }

  /**
   * Bounds what one user can make Gatehouse store: a new secret beyond
   * GATEHOUSE_MAX_SECRETS_PER_USER (their own, across servers) is 409 naming the limit and the
   * setting; replacing an existing one is always allowed. Counted under a transaction-scoped
   * advisory lock on the owner, so concurrent PUTs on any replicas cannot overshoot it.
   */
  private async assertRoomFor(em: EntityManager, owner: string, server: string, name: string): Promise<void> {
    await em.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`gatehouse:secrets-cap:${owner}`]);
    const [{ total, present }] = await em.query<[{ total: number; present: boolean }]>(
      'SELECT count(*)::int AS total, coalesce(bool_or(server = $2 AND name = $3), false) AS present FROM secrets WHERE owner = $1',
      [owner, server, name],
    );
    const max = this.config.secrets.maxPerUser;
    if (!present && total >= max) {
      throw new AppError(ErrorCode.Conflict, `you already store ${total} secrets, the maximum (GATEHOUSE_MAX_SECRETS_PER_USER=${max}); delete one first`, {
        details: { limit: max, setting: 'GATEHOUSE_MAX_SECRETS_PER_USER' },
      });
    }
  }

  /** Deletes a secret (204 whether or not it existed; 404 only for an unknown server). */
  async remove(owner: string, server: string, name: string): Promise<void> {
    parseBody(secretNameSchema, { name });
    await this.upstreams.get(server);
    const count = await this.repo.manager.transaction(async (em) => {
      const [, deleted] = await em.query<[unknown[], number]>('DELETE FROM secrets WHERE owner = $1 AND server = $2 AND name = $3', [owner, server, name]);
      if (deleted > 0) await this.bus.publish(SECRETS_CHANGED, { server, owner }, em);
      return deleted;
    });
    if (count > 0) {
      this.forget(server, owner);
      this.logger.info({ server, name, owner: owner === SHARED_OWNER ? 'shared' : owner }, 'secret deleted');
    }
  }

  /** Names, servers and dates of `owner`'s secrets (optionally of one server). Never values. */
  async list(owner: string, server?: string): Promise<SecretView[]> {
    if (server !== undefined) await this.upstreams.get(server);
    const rows = await this.repo.find({
      select: { server: true, name: true, updatedAt: true },
      where: { owner, ...(server === undefined ? {} : { server }) },
      order: { server: 'ASC', name: 'ASC' },
    });
    return rows.map((r) => ({ server: r.server, name: r.name, updatedAt: r.updatedAt.toISOString() }));
  }

  /**
   * The secrets a caller has for `server`: theirs, else the server's shared one of that name.
   * Cached; never a value read before a change of it that this replica has heard of.
   */
  async forCaller(server: string, owner: string | null): Promise<CallerSecrets> {
    const key = callerKey(server, owner);
    return this.cache.peek(key) ?? this.cache.get(key);
  }

  private async read(server: string, owner: string | null): Promise<CallerSecrets> {
    const owners = owner === null ? [SHARED_OWNER] : [SHARED_OWNER, owner];
    const rows = await this.repo.query<{ owner: string; name: string; key_id: string; nonce: Buffer; ciphertext: Buffer }[]>(
      'SELECT owner, name, key_id, nonce, ciphertext FROM secrets WHERE server = $1 AND owner = ANY($2) ORDER BY (owner = $3)',
      [server, owners, SHARED_OWNER],
    );
    const values = new Map<string, string>();
    const unreadable = new Map<string, string>();
    // Shared rows sort last: an owner's own value, read first, wins.
    for (const row of rows) {
      if (values.has(row.name)) continue;
      try {
        values.set(row.name, this.ring.open({ keyId: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext }, { owner: row.owner, server, name: row.name }));
        unreadable.delete(row.name);
      } catch (error) {
        if (!(error instanceof UnknownKeyError || error instanceof SecretDecryptError)) throw error;
        if (!unreadable.has(row.name)) unreadable.set(row.name, error.message);
        this.logger.error({ server, name: row.name, keyId: row.key_id, reason: error.message }, 'a stored secret cannot be decrypted');
      }
    }
    return { values, unreadable };
  }

  /** Throws a 400 naming `value` when a place the server uses secret `name` in cannot hold it. */
  private checkPlaces(server: string, name: string, value: string): void {
    const template = this.upstreams.template(server);
    if (!template) return;
    const places: [ValuePlace, string, Record<string, string>][] = [
      ['env', 'env', template.env],
      ['header', 'headers', template.headers],
      ['argument', 'inject', template.inject],
    ];
    for (const [place, field, map] of places) {
      const problem = valueProblem(value, place);
      const key = problem && keysUsing(map, name)[0];
      if (problem && key) {
        const message = `${problem}; server "${server}" passes ${name} in ${field}.${key}`;
        throw new AppError(ErrorCode.ValidationFailed, `value: ${message}`, { details: { fields: [{ field: 'value', message }] } });
      }
    }
  }

  /** How a caller sets a missing secret: the exact request. */
  howToSet(server: string, name: string): string {
    return `PUT ${this.config.http.publicUrl}/api/v1/me/secrets/${server}/${name} with the JSON body {"value": "<your ${name}>"}`;
  }

  /** What a change of `owner`'s secret for `server` invalidates: a shared one, every caller of the server. */
  private affected(server: string, owner: string): string | { where: (key: string) => boolean } {
    return owner === SHARED_OWNER ? { where: (key) => serverOf(key) === server } : callerKey(server, owner);
  }

  private forget(server: string, owner: string): void {
    const what = this.affected(server, owner);
    if (typeof what === 'string') this.cache.invalidate(what);
    else this.cache.invalidateWhere(what.where);
  }
}
