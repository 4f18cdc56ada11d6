import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

/**
 * Password hashing for local accounts: scrypt from node:crypto (no native add-on to build;
 * OWASP Password Storage Cheat Sheet lists scrypt with N=2^17, r=8, p=1 as a minimum; we use
 * N=2^15 with r=8, p=3, the cheat sheet's equivalent lower-memory setting, to keep a sign-in
 * around 100 ms and 32 MiB). The parameters are stored with every hash, so raising them later
 * leaves old hashes verifiable (and they are rehashed at the next sign-in).
 */
export interface ScryptParams {
  N: number;
  r: number;
  p: number;
  /** Derived key length in bytes. */
  keylen: number;
}

export const CURRENT_PARAMS: ScryptParams = { N: 2 ** 15, r: 8, p: 3, keylen: 32 };

/** A stored hash: algorithm, its parameters, salt and derived key. */
export interface PasswordHash {
  algorithm: 'scrypt';
  params: ScryptParams;
  salt: Buffer;
  hash: Buffer;
}

function derive(password: string, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, params.keylen, { N: params.N, r: params.r, p: params.p, maxmem: 256 * params.N * params.r + 1024 * 1024 }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

/** Hashes `password` with a fresh 16-byte salt and {@link CURRENT_PARAMS}. */
export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(16);
  return { algorithm: 'scrypt', params: CURRENT_PARAMS, salt, hash: await derive(password, salt, CURRENT_PARAMS) };
}

/** True when `password` matches `stored` (constant-time comparison of the derived keys). */
export async function verifyPassword(password: string, stored: PasswordHash): Promise<boolean> {
  const key = await derive(password, stored.salt, stored.params);
  return key.length === stored.hash.length && timingSafeEqual(key, stored.hash);
}

/** True when `stored` was made with weaker parameters than today's. */
export function needsRehash(stored: PasswordHash): boolean {
  return stored.params.N < CURRENT_PARAMS.N || stored.params.r < CURRENT_PARAMS.r || stored.params.p < CURRENT_PARAMS.p || stored.params.keylen < CURRENT_PARAMS.keylen;
}

/**
 * A hash of a random password, computed once: compared against when the username is unknown,
 * so an unknown user costs the same time as a wrong password (no account enumeration by timing).
 */
let decoy: Promise<PasswordHash> | undefined;
export function decoyHash(): Promise<PasswordHash> {
  decoy ??= hashPassword(randomBytes(16).toString('base64url'));
  return decoy;
}
