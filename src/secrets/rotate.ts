import type { DataSource } from 'typeorm';
import { withAdvisoryLock } from '../database/advisory-lock.js';
import { SecretDecryptError, UnknownKeyError, type KeyRing } from './secret-crypto.js';

export interface RotationReport {
  /** Rows re-sealed under the primary key by this run. */
  rotated: number;
  /** Rows that were already under the primary key. */
  current: number;
  /** Rows that could not be opened (unknown key id, tampered): left as they are. */
  failed: { server: string; name: string; keyId: string; reason: string }[];
}

const BATCH = 200;

/**
 * Re-seals every secret under the key ring's first (primary) key. Online (rows are re-sealed
 * one by one, each only if nobody changed it meanwhile), idempotent (rows already under the
 * primary key are skipped), resumable (a crash leaves each row either old or new — both
 * open with a ring holding both keys — and the next run continues), and one replica at a time
 * (advisory lock; a second run waits for the first).
 */
export async function rotateSecrets(dataSource: DataSource, ring: KeyRing): Promise<RotationReport> {
  return withAdvisoryLock(dataSource, 'gatehouse:secrets-rotate', async (q) => {
    const primary = ring.primaryId;
    const [{ count }] = (await q.query('SELECT count(*)::int AS count FROM secrets WHERE key_id = $1', [primary])) as [{ count: number }];
    const report: RotationReport = { rotated: 0, current: count, failed: [] };
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const rows = (await q.query(
        'SELECT id, owner, server, name, key_id, nonce, ciphertext FROM secrets WHERE key_id <> $1 AND id > $2 ORDER BY id LIMIT $3',
        [primary, after, BATCH],
      )) as { id: string; owner: string; server: string; name: string; key_id: string; nonce: Buffer; ciphertext: Buffer }[];
      if (rows.length === 0) break;
      for (const row of rows) {
        after = row.id;
        const aad = { owner: row.owner, server: row.server, name: row.name };
        let value: string;
        try {
          value = ring.open({ keyId: row.key_id, nonce: row.nonce, ciphertext: row.ciphertext }, aad);
        } catch (error) {
          if (!(error instanceof UnknownKeyError || error instanceof SecretDecryptError)) throw error;
          report.failed.push({ server: row.server, name: row.name, keyId: row.key_id, reason: error.message });
          continue;
        }
        const sealed = ring.seal(value, aad);
        const [, updated] = (await q.query(
          'UPDATE secrets SET key_id = $1, nonce = $2, ciphertext = $3 WHERE id = $4 AND key_id = $5 AND nonce = $6',
          [sealed.keyId, sealed.nonce, sealed.ciphertext, row.id, row.key_id, row.nonce],
        )) as [unknown, number];
        if (updated === 1) report.rotated++;
      }
    }
    return report;
  });
}
