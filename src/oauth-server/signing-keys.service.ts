import { Inject, Injectable } from '@nestjs/common';
import { generateKeyPair, exportJWK, createLocalJWKSet, type JWK, type JWTVerifyGetKey } from 'jose';
import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { KEY_RING } from '../secrets/key-ring.provider.js';
import type { KeyRing } from '../secrets/secret-crypto.js';

/** The algorithms of the signing key ring: ES256 signs access tokens; RS256 is there for ID tokens of clients that ask for it. */
export const SIGNING_ALGORITHMS = ['ES256', 'RS256'] as const;

interface KeyRow {
  kid: string;
  use: 'sig' | 'cookie';
  alg: string | null;
  ring_key_id: string;
  nonce: Buffer;
  ciphertext: Buffer;
  active_from: Date;
  retired_at: Date | null;
  expires_at: Date | null;
  now: Date;
}

/** The keys as loaded: private JWKs to sign (current first), public ones to verify, cookie secrets (newest first). */
export interface LoadedKeys {
  /** Private JWKs, the current signer of each algorithm first, then the others still published. */
  signing: JWK[];
  /** Public JWKs of every published key (current, upcoming and retired-but-not-expired). */
  publicJwks: { keys: JWK[] };
  cookieKeys: string[];
  /** Changes whenever the set or the order changes. */
  version: string;
}

/** How long (ms) a key is published before it signs, so every replica knows it first (they reload at least this often). */
export const KEY_OVERLAP_MS = 60_000;

/**
 * The authorization server's keys, kept in PostgreSQL (`oauth_keys`) sealed with the
 * GATEHOUSE_ENCRYPTION_KEYS ring (AES-256-GCM, bound to the key's id and use): asymmetric JWT
 * signing keys (ES256 and RS256) and the secrets that sign oidc-provider's cookies. Created on
 * first use by whichever replica comes first. Rotation ({@link rotate}) publishes the new keys at
 * once and signs with them after {@link KEY_OVERLAP_MS}; the old ones stay published until every
 * access token they signed has expired (access token lifetime + clock tolerance), then are dropped.
 */
@Injectable()
export class SigningKeysService {
  private loaded: LoadedKeys | undefined;
  private loading: Promise<LoadedKeys> | undefined;
  private lastLoad = 0;
  private verifyKeys: JWTVerifyGetKey | undefined;

  constructor(
    private readonly db: DataSource,
    @Inject(KEY_RING) private readonly ring: KeyRing,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
  ) {}

  /** The keys, reloaded from PostgreSQL when older than `maxAgeMs`; creates the first ones when there are none. */
  async keys(maxAgeMs = KEY_OVERLAP_MS / 2): Promise<LoadedKeys> {
    if (this.loaded && Date.now() - this.lastLoad < maxAgeMs) return this.loaded;
    this.loading ??= this.load().finally(() => (this.loading = undefined));
    return this.loading;
  }

  /**
   * A jose key resolver over the published public keys, for verifying access tokens in process
   * (no network call). An unknown `kid` reloads the keys (at most once per 5 s).
   */
  verifier(): JWTVerifyGetKey {
    return async (header, token) => {
      const keys = await this.keys(Number.POSITIVE_INFINITY);
      this.verifyKeys ??= createLocalJWKSet(keys.publicJwks);
      try {
        return await this.verifyKeys(header, token);
      } catch (error) {
        if (Date.now() - this.lastLoad < 5_000) throw error;
        const fresh = await this.keys(0);
        this.verifyKeys = createLocalJWKSet(fresh.publicJwks);
        return this.verifyKeys(header, token);
      }
    };
  }

  /**
   * Starts a new key generation: new signing keys published now, signing after
   * {@link KEY_OVERLAP_MS}; the current ones retire then and are published until their tokens
   * have expired. Also adds a new cookie key (the old ones keep verifying). Returns the new kids.
   */
  async rotate(): Promise<string[]> {
    const keepMs = this.config.oauthServer.accessTokenTtlMs + this.config.auth.jwt.clockToleranceSec * 1000 + KEY_OVERLAP_MS;
    await this.db.query(
      `UPDATE oauth_keys SET retired_at = now() + make_interval(secs => $1::double precision), expires_at = now() + make_interval(secs => $2::double precision)
       WHERE use = 'sig' AND retired_at IS NULL`,
      [KEY_OVERLAP_MS / 1000, keepMs / 1000],
    );
    const kids = await this.generate(KEY_OVERLAP_MS);
    this.lastLoad = 0;
    return kids;
  }

  private async load(): Promise<LoadedKeys> {
    let rows = await this.rows();
    if (!rows.some((r) => r.use === 'sig') || !rows.some((r) => r.use === 'cookie')) {
      await this.generate(0);
      rows = await this.rows();
    }
    const now = rows[0]?.now ?? new Date();
    const signing: JWK[] = [];
    const publicKeys: JWK[] = [];
    for (const alg of SIGNING_ALGORITHMS) {
      const ofAlg = rows.filter((r) => r.use === 'sig' && r.alg === alg);
      // The signer: the newest key already active and not yet retired; then the rest.
      const current = ofAlg.find((r) => r.active_from <= now && (r.retired_at === null || r.retired_at > now)) ?? ofAlg[0];
      for (const row of [current, ...ofAlg.filter((r) => r !== current)]) {
        if (!row) continue;
        const jwk = JSON.parse(this.open(row)) as JWK;
        signing.push({ ...jwk, kid: row.kid, alg, use: 'sig' });
        const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = jwk;
        publicKeys.push({ ...pub, kid: row.kid, alg, use: 'sig' });
      }
    }
    const cookieKeys = rows.filter((r) => r.use === 'cookie').map((r) => this.open(r));
    const version = rows.map((r) => `${r.kid}:${r.active_from <= now ? 1 : 0}:${r.retired_at && r.retired_at <= now ? 1 : 0}`).join(',') + `|${signing.map((k) => k.kid).join(',')}`;
    if (this.loaded?.version !== version) this.verifyKeys = undefined;
    this.loaded = { signing, publicJwks: { keys: publicKeys }, cookieKeys, version };
    this.lastLoad = Date.now();
    return this.loaded;
  }

  private async rows(): Promise<KeyRow[]> {
    return await this.db.query<KeyRow[]>(
      `SELECT kid, use, alg, ring_key_id, nonce, ciphertext, active_from, retired_at, expires_at, now() AS now FROM oauth_keys
       WHERE expires_at IS NULL OR expires_at > now() ORDER BY active_from DESC, created_at DESC`,
    );
  }

  private async generate(delayMs: number): Promise<string[]> {
    const kids: string[] = [];
    for (const alg of SIGNING_ALGORITHMS) {
      const { privateKey } = await generateKeyPair(alg, { extractable: true, ...(alg === 'RS256' ? { modulusLength: 2048 } : {}) });
      const kid = randomUUID();
      await this.insert(kid, 'sig', alg, JSON.stringify(await exportJWK(privateKey)), delayMs);
      kids.push(kid);
    }
    await this.insert(randomUUID(), 'cookie', null, randomBytes(32).toString('base64url'), 0);
    return kids;
  }

  private async insert(kid: string, use: 'sig' | 'cookie', alg: string | null, secret: string, delayMs: number): Promise<void> {
    const sealed = this.ring.seal(secret, { owner: 'oauth-server', server: use, name: kid });
    await this.db.query(
      `INSERT INTO oauth_keys (kid, use, alg, ring_key_id, nonce, ciphertext, active_from) VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7::double precision))`,
      [kid, use, alg, sealed.keyId, sealed.nonce, sealed.ciphertext, delayMs / 1000],
    );
  }

  private open(row: KeyRow): string {
    return this.ring.open({ keyId: row.ring_key_id, nonce: row.nonce, ciphertext: row.ciphertext }, { owner: 'oauth-server', server: row.use, name: row.kid });
  }
}
