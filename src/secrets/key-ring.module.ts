import { Module } from '@nestjs/common';
import { KEY_RING, keyRingProvider } from './key-ring.provider.js';

/**
 * The one key ring of a replica (`KEY_RING`: GATEHOUSE_ENCRYPTION_KEYS, or the development key),
 * shared by the secrets store and the authorization server's sealed signing keys — one module so
 * the ring is built (and the development-key warning logged) once.
 */
@Module({
  providers: [keyRingProvider],
  exports: [KEY_RING],
})
export class KeyRingModule {}
