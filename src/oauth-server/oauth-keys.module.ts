import { Module } from '@nestjs/common';
import { keyRingProvider } from '../secrets/key-ring.provider.js';
import { SigningKeysService } from './signing-keys.service.js';

/** The authorization server's key ring (signing and cookie keys), shared by the server and the oauth2 strategy. */
@Module({
  providers: [keyRingProvider, SigningKeysService],
  exports: [SigningKeysService],
})
export class OAuthKeysModule {}
