import { chmodSync, existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Provider } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { DEV_KEY_FILE, loadOrCreateDevKeyRing, parseKeyRing, type KeyRing } from './secret-crypto.js';

export const KEY_RING = Symbol('KEY_RING');

/** The development key's folder inside GATEHOUSE_DATA_DIR. */
export const DEV_KEY_DIR = 'keys';

/**
 * Prepares the folder for the development key and returns it: `<dataDir>/keys`, mode 0700,
 * inside `dataDir`, mode 0755 when this creates it. The data directory itself stays
 * traversable because the embedded PostgreSQL keeps its data beside the key
 * (`<dataDir>/postgres` by default) and, when Gatehouse runs as root, runs as the `postgres`
 * user, who must be able to enter it; only the key folder is private.
 *
 * A key left directly in `dataDir` by an earlier version (which made `dataDir` 0700) is moved
 * into the key folder (an atomic rename) and `dataDir` opened to 0755, so a later embedded start
 * works. Returns the folder and whether such a move happened.
 */
export function prepareDevKeyDir(dataDir: string): { dir: string; moved: boolean } {
  const created = mkdirSync(dataDir, { recursive: true, mode: 0o755 });
  if (created !== undefined) chmodSync(dataDir, 0o755); // whatever the umask
  const dir = join(dataDir, DEV_KEY_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const legacy = join(dataDir, DEV_KEY_FILE);
  if (!existsSync(legacy) || existsSync(join(dir, DEV_KEY_FILE))) return { dir, moved: false };
  renameSync(legacy, join(dir, DEV_KEY_FILE));
  if ((statSync(dataDir).mode & 0o777) === 0o700) chmodSync(dataDir, 0o755);
  return { dir, moved: true };
}

/**
 * The key ring: GATEHOUSE_ENCRYPTION_KEYS (validated at config load), or — outside production
 * only; config refuses to boot there without keys — a key generated once into
 * `GATEHOUSE_DATA_DIR/keys` (folder 0700, file 0600), announced with one warning line.
 */
export const keyRingProvider: Provider = {
  provide: KEY_RING,
  inject: [APP_CONFIG, PinoLogger],
  useFactory: (config: AppConfig, logger: PinoLogger): KeyRing => {
    if (config.secrets.keys) return parseKeyRing(config.secrets.keys);
    const { dir, moved } = prepareDevKeyDir(config.secrets.dataDir);
    const { ring, created, path } = loadOrCreateDevKeyRing(dir);
    if (moved) logger.info({ path }, `moved the development key into ${path} (its folder is private; the data directory is 0755)`);
    logger.warn(
      { path, created },
      `GATEHOUSE_ENCRYPTION_KEYS is not set: secrets are encrypted with a development key kept in ${path}; set GATEHOUSE_ENCRYPTION_KEYS in production`,
    );
    return ring;
  },
};
