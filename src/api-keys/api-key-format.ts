import { createHmac, createSecretKey, randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';

/**
 * Gatehouse API keys: `gatehouse_` + 43 base64url characters (256 random bits). The fixed,
 * unusual prefix lets secret scanners (GitHub push protection, gitleaks, trufflehog) find a
 * leaked key with one rule, and lets the guard tell a key from a JWT without trying both.
 */
export const API_KEY_PREFIX = 'gatehouse_';
const KEY_SHAPE = /^gatehouse_[A-Za-z0-9_-]{43}$/;

/** A fresh key; shown to its creator once and stored only as {@link hashApiKey}. */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(32).toString('base64url');
}

export function looksLikeGatehouseKey(value: string): boolean {
  return KEY_SHAPE.test(value);
}

/**
 * The stored form: HMAC-SHA-256 under the pepper, hex. A fast keyed hash, not bcrypt: keys
 * carry 256 random bits (nothing to brute-force), and a slow hash would cost every request.
 */
export function hashApiKey(key: string, pepper: string): string {
  return createHmac('sha256', pepperKey(pepper)).update(key).digest('hex');
}

/** The pepper as a KeyObject, made once: a string key is re-imported on every createHmac. */
let pepperCache: { pepper: string; key: KeyObject } | undefined;
function pepperKey(pepper: string): KeyObject {
  if (pepperCache?.pepper !== pepper) pepperCache = { pepper, key: createSecretKey(Buffer.from(pepper, 'utf8')) };
  return pepperCache.key;
}

/** The non-secret part shown in lists so people can tell their keys apart (`gatehouse_AbCd…`). */
export function displayPrefix(key: string): string {
  return key.slice(0, API_KEY_PREFIX.length + 6);
}

/** Constant-time equality of two hex digests. */
export function digestsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'hex');
  const y = Buffer.from(b, 'hex');
  return x.length === y.length && timingSafeEqual(x, y);
}
