import { createCipheriv, createDecipheriv, createSecretKey, randomBytes, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Encryption of stored secrets: AES-256-GCM with a fresh random 96-bit nonce per value and a
 * 128-bit tag. The additional authenticated data binds each ciphertext to its
 * (owner, server, name), so a row copied to another user, server or name does not decrypt.
 *
 * Keys come from a key ring (GATEHOUSE_ENCRYPTION_KEYS = `id:base64key,...`): the first key
 * seals, every key opens, so keys rotate by prepending a new one and re-sealing at leisure.
 * Key bytes live only in KeyObjects held in a private field; nothing printable (toJSON,
 * util.inspect, error messages) ever contains them.
 */

const ALGORITHM = 'aes-256-gcm';
export const KEY_BYTES = 32;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
/** Version of the additional-data encoding below; bump it if the encoding ever changes. */
const AAD_VERSION = 1;

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
/** Standard or url-safe base64, padding optional (strictness beyond this is the 32-byte check). */
const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;
const ENV = 'GATEHOUSE_ENCRYPTION_KEYS';
const GENERATE_HINT = 'generate one with: openssl rand -base64 32';
const ID_RULE = 'key ids are 1-32 characters of A-Z a-z 0-9 _ -';

/** What a ciphertext is bound to. `owner` is a user id, or `'*'` for a server-wide shared secret. */
export interface SecretAad {
  owner: string;
  server: string;
  name: string;
}

/**
 * A sealed value, as stored. `ciphertext` is the AES-GCM ciphertext with the 16-byte
 * authentication tag appended (`ciphertext || tag`), so it is always at least 16 bytes long.
 */
export interface SealedSecret {
  keyId: string;
  nonce: Buffer;
  ciphertext: Buffer;
}

export interface KeyRingEntry {
  id: string;
  key: Buffer;
}

/** An invalid key ring (GATEHOUSE_ENCRYPTION_KEYS or the development key file). Never contains key material. */
export class KeyRingError extends Error {
  override name = 'KeyRingError';
}

/** A value sealed under a key id the ring does not hold. */
export class UnknownKeyError extends Error {
  override name = 'UnknownKeyError';
  constructor(
    readonly keyId: string,
    knownIds: readonly string[],
  ) {
    super(
      `secret was encrypted with key "${keyId}", which is not in the key ring (known: ${knownIds.join(', ')}); ` +
        `add that key to ${ENV} to decrypt it`,
    );
  }
}

/** A value that fails authentication: altered, moved to another owner/server/name, or the wrong key. */
export class SecretDecryptError extends Error {
  override name = 'SecretDecryptError';
  readonly owner: string;
  readonly server: string;
  readonly secretName: string;
  constructor(
    aad: SecretAad,
    readonly keyId: string,
  ) {
    super(
      `cannot decrypt secret "${String(aad.name)}" of server "${String(aad.server)}" (owner "${String(aad.owner)}") with key "${keyId}": ` +
        'authentication failed (the stored value was altered, belongs to another owner/server/name, or the key under that id has changed)',
    );
    this.owner = aad.owner;
    this.server = aad.server;
    this.secretName = aad.name;
  }
}

/**
 * Unambiguous encoding of (owner, server, name): a version byte, then for each field its UTF-8
 * byte length as a 32-bit big-endian integer followed by the bytes. ("ab", "c") and ("a", "bc")
 * therefore differ.
 */
export function encodeAad(aad: SecretAad): Buffer {
  const fields = [aad.owner, aad.server, aad.name].map((f) => {
    if (typeof f !== 'string') throw new TypeError('secret owner, server and name must be strings');
    return Buffer.from(f, 'utf8');
  });
  const out = Buffer.alloc(1 + fields.reduce((n, f) => n + 4 + f.length, 0));
  out[0] = AAD_VERSION;
  let at = 1;
  for (const f of fields) {
    at = out.writeUInt32BE(f.length, at);
    at += f.copy(out, at);
  }
  return out;
}

const INSPECT = Symbol.for('nodejs.util.inspect.custom');

export class KeyRing {
  readonly #keys: ReadonlyMap<string, KeyObject>;
  readonly #primaryId: string;

  /** The first entry seals; all entries open. Key buffers are copied, never kept. */
  constructor(entries: readonly KeyRingEntry[]) {
    if (entries.length === 0) throw new KeyRingError('key ring: no keys given');
    const keys = new Map<string, KeyObject>();
    for (const { id, key } of entries) {
      if (typeof id !== 'string' || !KEY_ID.test(id)) throw new KeyRingError(`key ring: invalid key id; ${ID_RULE}`);
      if (keys.has(id)) throw new KeyRingError(`key ring: key id "${id}" appears more than once`);
      if (!Buffer.isBuffer(key) || key.length !== KEY_BYTES) {
        throw new KeyRingError(`key ring: key "${id}" is ${Buffer.isBuffer(key) ? key.length : 0} bytes; expected ${KEY_BYTES}`);
      }
      keys.set(id, createSecretKey(key)); // copies the bytes
    }
    this.#keys = keys;
    this.#primaryId = entries[0].id;
  }

  /** The id new values are sealed under. */
  get primaryId(): string {
    return this.#primaryId;
  }

  /** All key ids, primary first. */
  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  has(id: string): boolean {
    return this.#keys.has(id);
  }

  seal(plaintext: string, aad: SecretAad): SealedSecret {
    if (typeof plaintext !== 'string') throw new TypeError('secret value must be a string');
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(ALGORITHM, this.#keys.get(this.#primaryId)!, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(encodeAad(aad));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return { keyId: this.#primaryId, nonce, ciphertext };
  }

  /**
   * Decrypts and authenticates. Throws UnknownKeyError when the value's key id is not in the
   * ring, SecretDecryptError for anything else that does not authenticate — never another error.
   */
  open(sealed: SealedSecret, aad: SecretAad): string {
    const keyId = sealed?.keyId;
    const key = typeof keyId === 'string' ? this.#keys.get(keyId) : undefined;
    if (!key) throw new UnknownKeyError(String(keyId), this.keyIds);
    const { nonce, ciphertext } = sealed;
    if (!(nonce instanceof Uint8Array) || nonce.length !== NONCE_BYTES || !(ciphertext instanceof Uint8Array) || ciphertext.length < TAG_BYTES) {
      throw new SecretDecryptError(aad, keyId);
    }
    try {
      const decipher = createDecipheriv(ALGORITHM, key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(encodeAad(aad));
      decipher.setAuthTag(ciphertext.subarray(ciphertext.length - TAG_BYTES));
      const body = ciphertext.subarray(0, ciphertext.length - TAG_BYTES);
      return Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
    } catch {
      throw new SecretDecryptError(aad, keyId);
    }
  }

  toJSON(): { primaryId: string; keyIds: string[] } {
    return { primaryId: this.#primaryId, keyIds: this.keyIds };
  }

  [INSPECT](): string {
    return `KeyRing { primaryId: '${this.#primaryId}', keyIds: [${this.keyIds.map((id) => `'${id}'`).join(', ')}] }`;
  }

  toString(): string {
    return this[INSPECT]();
  }
}

/**
 * Parses `id:base64key` pairs, comma-separated (whitespace around entries, ids and keys
 * ignored). `source` names the origin in error messages.
 */
function parseEntries(raw: string, source: string): KeyRingEntry[] {
  const fail = (message: string): never => {
    throw new KeyRingError(`${source}: ${message}`);
  };
  const parts = String(raw)
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0) fail(`no keys given; expected id:base64key pairs, comma-separated (${GENERATE_HINT})`);
  const entries: KeyRingEntry[] = [];
  parts.forEach((part, i) => {
    const colon = part.indexOf(':');
    // The entry itself is never echoed: without a colon it may well be a bare key.
    if (colon < 0) fail(`entry ${i + 1} has no ":"; expected id:base64key pairs, comma-separated (e.g. k1:<32 bytes base64>)`);
    const id = part.slice(0, colon).trim();
    const encoded = part.slice(colon + 1).trim();
    if (!KEY_ID.test(id)) fail(`entry ${i + 1} has an invalid key id; ${ID_RULE}`);
    if (entries.some((e) => e.id === id)) fail(`key id "${id}" appears more than once; each key needs its own id`);
    if (!BASE64.test(encoded)) fail(`key "${id}" is not base64; expected ${KEY_BYTES} bytes, base64-encoded (${GENERATE_HINT})`);
    const key = Buffer.from(encoded, 'base64');
    if (key.length !== KEY_BYTES) {
      key.fill(0);
      fail(`key "${id}" is ${key.length} bytes; expected ${KEY_BYTES} bytes, base64-encoded (${GENERATE_HINT})`);
    }
    entries.push({ id, key });
  });
  return entries;
}

function ringFrom(raw: string, source: string): KeyRing {
  const entries = parseEntries(raw, source);
  try {
    return new KeyRing(entries);
  } finally {
    for (const e of entries) e.key.fill(0);
  }
}

/** The key ring from GATEHOUSE_ENCRYPTION_KEYS (`id:base64key,...`, first key seals). Throws KeyRingError. */
export function parseKeyRing(raw: string): KeyRing {
  return ringFrom(raw, ENV);
}

/** A fresh `id:base64key` line (32 random bytes), for docs and the CLI. */
export function generateKeyLine(id: string): string {
  if (!KEY_ID.test(id)) throw new KeyRingError(`invalid key id; ${ID_RULE}`);
  const key = randomBytes(KEY_BYTES);
  try {
    return `${id}:${key.toString('base64')}`;
  } finally {
    key.fill(0);
  }
}

export const DEV_KEY_FILE = 'encryption-keys';

/**
 * Outside production: the key ring kept in `<dir>/encryption-keys` (same `id:base64key`
 * format; lines and commas both separate entries, `#` lines are comments), created on first
 * use (mode 0600) with a single `dev-<yyyymmdd>` key.
 */
export function loadOrCreateDevKeyRing(dir: string): { ring: KeyRing; created: boolean; path: string } {
  const path = join(dir, DEV_KEY_FILE);
  const existing = readKeyFile(path);
  if (existing !== undefined) return { ring: fileRing(existing, path), created: false, path };

  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stamp = new Date().toISOString().slice(0, 10).replaceAll('-', '');
  const line = generateKeyLine(`dev-${stamp}`);
  try {
    writeFileSync(path, `${line}\n`, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    // Another process created it first: use theirs, once it has been written.
    return { ring: fileRing(readWhenWritten(path), path), created: false, path };
  }
  return { ring: fileRing(line, path), created: true, path };
}

function readKeyFile(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/** Reads a file another process has just created, waiting briefly (up to ~1 s) for its content. */
function readWhenWritten(path: string): string {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let attempt = 0; ; attempt++) {
    const content = readKeyFile(path) ?? '';
    if (content.trim() !== '' || attempt >= 20) return content;
    Atomics.wait(pause, 0, 0, 50);
  }
}

function fileRing(content: string, path: string): KeyRing {
  const raw = content
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .join(',');
  return ringFrom(raw, path);
}
