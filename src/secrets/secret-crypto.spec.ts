import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';
import {
  generateKeyLine,
  KeyRing,
  KeyRingError,
  loadOrCreateDevKeyRing,
  parseKeyRing,
  SecretDecryptError,
  UnknownKeyError,
  type SealedSecret,
  type SecretAad,
} from './secret-crypto.js';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const aad: SecretAad = { owner: 'user-1', server: 'github', name: 'GITHUB_TOKEN' };
const ring1 = new KeyRing([{ id: 'k1', key: k1 }]);

const flip = (buf: Buffer, at: number): Buffer => {
  const copy = Buffer.from(buf);
  copy[at] ^= 0x01;
  return copy;
};

describe('KeyRing seal/open', () => {
  it('round-trips and seals under the primary key with a 12-byte nonce and 16-byte tag', () => {
    const sealed = ring1.seal('s3cret', aad);
    assert.equal(sealed.keyId, 'k1');
    assert.equal(sealed.nonce.length, 12);
    assert.equal(sealed.ciphertext.length, 's3cret'.length + 16);
    assert.equal(ring1.open(sealed, aad), 's3cret');
  });

  it('round-trips an empty value and a 64 KiB unicode value', () => {
    assert.equal(ring1.open(ring1.seal('', aad), aad), '');
    const big = '密钥🔑é'.repeat(Math.ceil((64 * 1024) / 10)).slice(0, 64 * 1024);
    assert.equal(ring1.open(ring1.seal(big, aad), aad), big);
  });

  it('uses a fresh nonce per seal: the same value twice gives different ciphertexts', () => {
    const a = ring1.seal('same', aad);
    const b = ring1.seal('same', aad);
    assert.notDeepEqual(a.nonce, b.nonce);
    assert.notDeepEqual(a.ciphertext, b.ciphertext);
  });

  it('rejects a tampered ciphertext, nonce or tag with SecretDecryptError', () => {
    const sealed = ring1.seal('do not touch', aad);
    const tampered: SealedSecret[] = [
      { ...sealed, ciphertext: flip(sealed.ciphertext, 0) },
      { ...sealed, nonce: flip(sealed.nonce, 5) },
      { ...sealed, ciphertext: flip(sealed.ciphertext, sealed.ciphertext.length - 1) }, // tag
      { ...sealed, ciphertext: sealed.ciphertext.subarray(0, sealed.ciphertext.length - 4) }, // truncated tag
    ];
    for (const t of tampered) assert.throws(() => ring1.open(t, aad), SecretDecryptError);
  });

  it('never throws anything but SecretDecryptError for malformed rows', () => {
    const sealed = ring1.seal('x', aad);
    const malformed: SealedSecret[] = [
      { ...sealed, nonce: Buffer.alloc(0) },
      { ...sealed, nonce: Buffer.concat([sealed.nonce, Buffer.alloc(1)]) },
      { ...sealed, ciphertext: Buffer.alloc(0) },
      { ...sealed, ciphertext: Buffer.alloc(15) },
      { ...sealed, nonce: 'not a buffer' as unknown as Buffer },
      { ...sealed, ciphertext: null as unknown as Buffer },
    ];
    for (const m of malformed) assert.throws(() => ring1.open(m, aad), SecretDecryptError);
  });

  it('binds the ciphertext to owner, server and name', () => {
    const sealed = ring1.seal('bound', aad);
    for (const other of [
      { ...aad, owner: 'user-2' },
      { ...aad, owner: '*' },
      { ...aad, server: 'gitlab' },
      { ...aad, name: 'OTHER_TOKEN' },
    ]) {
      assert.throws(() => ring1.open(sealed, other), SecretDecryptError);
    }
  });

  it('encodes the additional data unambiguously: ("ab", "c") is not ("a", "bc")', () => {
    const sealed = ring1.seal('v', { owner: 'ab', server: 'c', name: 'N' });
    assert.throws(() => ring1.open(sealed, { owner: 'a', server: 'bc', name: 'N' }), SecretDecryptError);
    const sealed2 = ring1.seal('v', { owner: 'o', server: 'ab', name: 'c' });
    assert.throws(() => ring1.open(sealed2, { owner: 'o', server: 'a', name: 'bc' }), SecretDecryptError);
  });

  it('names owner, server and name in the decrypt error, and no bytes', () => {
    const sealed = ring1.seal('payload', aad);
    const error = captureError(() => ring1.open(sealed, { ...aad, owner: 'mallory' }));
    assert.ok(error instanceof SecretDecryptError);
    assert.match(error.message, /GITHUB_TOKEN/);
    assert.match(error.message, /github/);
    assert.match(error.message, /mallory/);
    for (const b of [sealed.ciphertext, sealed.nonce, k1]) {
      assert.ok(!error.message.includes(b.toString('hex')) && !error.message.includes(b.toString('base64')));
    }
  });

  it('rejects a value sealed with a different key under the same id', () => {
    const other = new KeyRing([{ id: 'k1', key: k2 }]);
    assert.throws(() => other.open(ring1.seal('v', aad), aad), SecretDecryptError);
  });

  it('opens with any key and seals with the first one (rotation)', () => {
    const oldRow = ring1.seal('old', aad);
    const rotated = new KeyRing([
      { id: 'k2', key: k2 },
      { id: 'k1', key: k1 },
    ]);
    assert.equal(rotated.primaryId, 'k2');
    assert.ok(rotated.has('k1') && rotated.has('k2') && !rotated.has('k3'));
    assert.equal(rotated.open(oldRow, aad), 'old');
    const newRow = rotated.seal('new', aad);
    assert.equal(newRow.keyId, 'k2');
    assert.equal(rotated.open(newRow, aad), 'new');
    assert.throws(() => ring1.open(newRow, aad), UnknownKeyError);
  });

  it('reports an unknown key id with UnknownKeyError naming it and the variable to fix', () => {
    const sealed = { ...ring1.seal('v', aad), keyId: 'retired-7' };
    const error = captureError(() => ring1.open(sealed, aad));
    assert.ok(error instanceof UnknownKeyError);
    assert.match(error.message, /"retired-7"/);
    assert.match(error.message, /add that key to GATEHOUSE_ENCRYPTION_KEYS/);
  });

  it('keeps its own copy of the key bytes', () => {
    const key = randomBytes(32);
    const ring = new KeyRing([{ id: 'c', key }]);
    const sealed = ring.seal('v', aad);
    key.fill(0);
    assert.equal(ring.open(sealed, aad), 'v');
  });

  it('never shows key material through inspect, JSON or toString', () => {
    const ring = new KeyRing([
      { id: 'k2', key: k2 },
      { id: 'k1', key: k1 },
    ]);
    const shown = [inspect(ring, { showHidden: true, depth: Infinity }), JSON.stringify(ring), JSON.stringify({ ring }), String(ring), `${inspect({ nested: ring })}`];
    for (const text of shown) {
      for (const key of [k1, k2]) {
        assert.ok(!text.includes(key.toString('base64')), text);
        assert.ok(!text.includes(key.toString('base64url')), text);
        assert.ok(!text.includes(key.toString('hex')), text);
      }
      assert.match(text, /k2/);
    }
    assert.deepEqual(JSON.parse(JSON.stringify(ring)), { primaryId: 'k2', keyIds: ['k2', 'k1'] });
  });
});

describe('parseKeyRing', () => {
  it('parses id:base64key pairs, trimming whitespace, the first key sealing', () => {
    const ring = parseKeyRing(` k2 : ${k2.toString('base64')} ,\n k1:${k1.toString('base64')} `);
    assert.equal(ring.primaryId, 'k2');
    assert.ok(ring.has('k1'));
    assert.equal(ring.open(ring1.seal('v', aad), aad), 'v');
  });

  it('accepts url-safe and unpadded base64', () => {
    let key = randomBytes(32);
    while (!/[+/]/.test(key.toString('base64'))) key = randomBytes(32);
    const ring = parseKeyRing(`u:${key.toString('base64url')}`);
    const reference = new KeyRing([{ id: 'u', key }]);
    assert.equal(ring.open(reference.seal('v', aad), aad), 'v');
  });

  it('rejects a key of the wrong length, naming the id but not the key', () => {
    const short = randomBytes(24).toString('base64');
    const error = captureError(() => parseKeyRing(`k1:${k1.toString('base64')},k2:${short}`));
    assert.ok(error instanceof KeyRingError);
    assert.equal(
      error.message,
      'GATEHOUSE_ENCRYPTION_KEYS: key "k2" is 24 bytes; expected 32 bytes, base64-encoded (generate one with: openssl rand -base64 32)',
    );
    assert.ok(!error.message.includes(short));
    assert.ok(!error.message.includes(k1.toString('base64')));
  });

  it('rejects a key that is not base64, without echoing it', () => {
    const error = captureError(() => parseKeyRing('k1:not*base64!'));
    assert.ok(error instanceof KeyRingError);
    assert.match(error.message, /key "k1" is not base64/);
    assert.ok(!error.message.includes('not*base64!'));
  });

  it('rejects duplicate ids', () => {
    assert.throws(() => parseKeyRing(`k1:${k1.toString('base64')},k1:${k2.toString('base64')}`), {
      name: 'KeyRingError',
      message: /key id "k1" appears more than once/,
    });
  });

  it('rejects invalid ids without echoing them', () => {
    for (const id of ['', 'has space', 'a'.repeat(33), 'ümlaut']) {
      const error = captureError(() => parseKeyRing(`${id}:${k1.toString('base64')}`));
      assert.ok(error instanceof KeyRingError, id);
      assert.match(error.message, /invalid key id/);
      assert.ok(!error.message.includes(k1.toString('base64')));
    }
  });

  it('rejects an entry without a colon, without echoing it (it may be a bare key)', () => {
    const bare = k1.toString('base64');
    const error = captureError(() => parseKeyRing(bare));
    assert.ok(error instanceof KeyRingError);
    assert.match(error.message, /expected id:base64key pairs/);
    assert.ok(!error.message.includes(bare));
  });

  it('rejects an empty list', () => {
    for (const raw of ['', '   ', ' , ,']) assert.throws(() => parseKeyRing(raw), { name: 'KeyRingError', message: /no keys given/ });
  });
});

describe('generateKeyLine', () => {
  it('produces a line parseKeyRing accepts', () => {
    const line = generateKeyLine('k9');
    assert.match(line, /^k9:[A-Za-z0-9+/]{43}=$/);
    assert.equal(parseKeyRing(line).primaryId, 'k9');
    assert.notEqual(generateKeyLine('k9'), line);
    assert.throws(() => generateKeyLine('bad id'), KeyRingError);
  });
});

describe('loadOrCreateDevKeyRing', () => {
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-secret-crypto-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('creates a 0600 key file once and returns the same key afterwards', () => {
    const dir = join(root, 'nested', 'data');
    const first = loadOrCreateDevKeyRing(dir);
    assert.equal(first.created, true);
    assert.equal(first.path, join(dir, 'encryption-keys'));
    if (process.platform !== 'win32') assert.equal(statSync(first.path).mode & 0o777, 0o600);
    assert.match(first.ring.primaryId, /^dev-\d{8}$/);
    assert.match(readFileSync(first.path, 'utf8'), /^dev-\d{8}:[A-Za-z0-9+/]{43}=\n$/);

    const second = loadOrCreateDevKeyRing(dir);
    assert.equal(second.created, false);
    assert.equal(second.path, first.path);
    assert.equal(second.ring.primaryId, first.ring.primaryId);
    assert.equal(second.ring.open(first.ring.seal('dev', aad), aad), 'dev');
  });

  it('reads an existing file in the id:base64 format, with comments and several lines', () => {
    const dir = join(root, 'existing');
    loadOrCreateDevKeyRing(dir); // creates the directory
    writeFileSync(join(dir, 'encryption-keys'), `# rotated\nk2:${k2.toString('base64')}\nk1:${k1.toString('base64')}\n`);
    const { ring, created } = loadOrCreateDevKeyRing(dir);
    assert.equal(created, false);
    assert.equal(ring.primaryId, 'k2');
    assert.equal(ring.open(ring1.seal('v', aad), aad), 'v');
  });

  it('names the file, not the environment variable, when its content is invalid', () => {
    const dir = join(root, 'broken');
    loadOrCreateDevKeyRing(dir);
    const file = join(dir, 'encryption-keys');
    writeFileSync(file, `k1:${randomBytes(16).toString('base64')}\n`);
    assert.throws(() => loadOrCreateDevKeyRing(dir), { name: 'KeyRingError', message: new RegExp(`^${escape(file)}: key "k1" is 16 bytes`) });
  });
});

function captureError(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  assert.fail('expected an error');
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
