import { Module } from '@nestjs/common';
import { KeyRingModule } from '../secrets/key-ring.module.js';
import { SigningKeysService } from './signing-keys.service.js';

/** The authorization server's key ring (signing and cookie keys), shared by the server and the oauth2 strategy. */
@Module({
  imports: [KeyRingModule],
  providers: [SigningKeysService],
  exports: [SigningKeysService],
})
export class OAuthKeysModule {}
