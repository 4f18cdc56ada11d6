import { Module } from '@nestjs/common';
import { KeyRingModule } from '../secrets/key-ring.module.js';
import { RevokedGrantsService } from './revoked-grants.service.js';
import { SigningKeysService } from './signing-keys.service.js';

/**
 * What the authorization server shares with the oauth2 strategy: its key ring (signing and
 * cookie keys) and the set of revoked approvals whose access tokens are refused.
 */
@Module({
  imports: [KeyRingModule],
  providers: [SigningKeysService, RevokedGrantsService],
  exports: [SigningKeysService, RevokedGrantsService],
})
export class OAuthKeysModule {}
