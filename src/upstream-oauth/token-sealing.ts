import type { KeyRing, SealedSecret } from '../secrets/secret-crypto.js';

/**
 * The sealed fields of an upstream OAuth connection, and of the connect flow
 * (src/upstream-connect): a registered client's secret, a pending flow's PKCE verifier, a
 * connect link's reference.
 */
export type SealedField = 'access_token' | 'refresh_token' | 'client_secret' | 'registered_client_secret' | 'code_verifier' | 'connect_link';

/** Owner of a server's shared connection (as `SHARED_OWNER` of the secrets store). */
export const SHARED_CONNECTION_OWNER = '*';

/**
 * The additional data a connection's sealed field is bound to: (owner, server,
 * `upstream-oauth:<field>`). The name cannot be a secret name (`[A-Za-z_][A-Za-z0-9_]*`), so
 * a value sealed for the secrets store does not open here either, and a row (or one column)
 * copied to another user, server or field fails to open.
 */
export function sealingAad(owner: string, server: string, field: SealedField): { owner: string; server: string; name: string } {
  return { owner, server, name: `upstream-oauth:${field}` };
}

const b64 = (b: Buffer) => b.toString('base64url');

/** Seals `value` for (owner, server, field); the stored text is `keyId.nonce.ciphertext` (base64url). */
export function sealField(ring: KeyRing, owner: string, server: string, field: SealedField, value: string): string {
  const sealed = ring.seal(value, sealingAad(owner, server, field));
  return `${sealed.keyId}.${b64(sealed.nonce)}.${b64(sealed.ciphertext)}`;
}

/**
 * Opens what {@link sealField} stored for the same (owner, server, field).
 * @throws SecretDecryptError (moved, altered, wrong key), UnknownKeyError (key not in the ring), Error (malformed text)
 */
export function openField(ring: KeyRing, owner: string, server: string, field: SealedField, stored: string): string {
  const parts = stored.split('.');
  if (parts.length !== 3) throw new Error(`the sealed ${field} of server "${server}" is malformed`);
  const sealed: SealedSecret = { keyId: parts[0], nonce: Buffer.from(parts[1], 'base64url'), ciphertext: Buffer.from(parts[2], 'base64url') };
  return ring.open(sealed, sealingAad(owner, server, field));
}
