import type { Provider } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { loadOrCreateDevKeyRing, parseKeyRing, type KeyRing } from './secret-crypto.js';

export const KEY_RING = Symbol('KEY_RING');

/**
 * The key ring: GATEHOUSE_ENCRYPTION_KEYS (validated at config load), or — outside production
 * only; config refuses to boot there without keys — a key generated once into
 * GATEHOUSE_DATA_DIR (mode 0600), announced with one warning line.
 */
export const keyRingProvider: Provider = {
  provide: KEY_RING,
  inject: [APP_CONFIG, PinoLogger],
  useFactory: (config: AppConfig, logger: PinoLogger): KeyRing => {
    if (config.secrets.keys) return parseKeyRing(config.secrets.keys);
    const { ring, created, path } = loadOrCreateDevKeyRing(config.secrets.dataDir);
    logger.warn(
      { path, created },
      `GATEHOUSE_ENCRYPTION_KEYS is not set: secrets are encrypted with a development key kept in ${path}; set GATEHOUSE_ENCRYPTION_KEYS in production`,
    );
    return ring;
  },
};
