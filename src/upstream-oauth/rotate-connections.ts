import type { DataSource } from 'typeorm';
import { withAdvisoryLock } from '../database/advisory-lock.js';
import { SecretDecryptError, UnknownKeyError, type KeyRing } from '../secrets/secret-crypto.js';
import { openField, sealField, type SealedField } from './token-sealing.js';

/** What `secrets rotate` did to the upstream OAuth connections. */
export interface ConnectionRotationReport {
  /** Sealed values re-sealed under the primary key by this run. */
  rotated: number;
  /** Sealed values already under the primary key. */
  current: number;
  /** Values that could not be opened (unknown key id, tampered): left as they are. */
  failed: { server: string; owner: string; field: SealedField; reason: string }[];
}

const FIELDS: [SealedField, 'access_token_sealed' | 'refresh_token_sealed' | 'client_secret_sealed'][] = [
  ['access_token', 'access_token_sealed'],
  ['refresh_token', 'refresh_token_sealed'],
  ['client_secret', 'client_secret_sealed'],
];

/**
 * Re-seals every token and client secret of `upstream_oauth_connections` under the key ring's
 * primary key — the part of `secrets rotate` for this table, with the same properties: online
 * (each value replaced only if unchanged meanwhile: a refresh that wrote a new token wins),
 * idempotent, resumable, one run at a time (advisory lock).
 */
export async function rotateConnections(dataSource: DataSource, ring: KeyRing): Promise<ConnectionRotationReport> {
  return withAdvisoryLock(dataSource, 'gatehouse:upstream-oauth-rotate', async (q) => {
    const report: ConnectionRotationReport = { rotated: 0, current: 0, failed: [] };
    const rows = (await q.query('SELECT id, server, owner, access_token_sealed, refresh_token_sealed, client_secret_sealed FROM upstream_oauth_connections ORDER BY id')) as Record<string, string | null>[];
    for (const row of rows) {
      for (const [field, column] of FIELDS) {
        const stored = row[column];
        if (!stored) continue;
        if (stored.startsWith(`${ring.primaryId}.`)) {
          report.current++;
          continue;
        }
        let value: string;
        try {
          value = openField(ring, row.owner!, row.server!, field, stored);
        } catch (error) {
          if (!(error instanceof UnknownKeyError || error instanceof SecretDecryptError)) throw error;
          report.failed.push({ server: row.server!, owner: row.owner!, field, reason: error.message });
          continue;
        }
        const [, updated] = (await q.query(`UPDATE upstream_oauth_connections SET ${column} = $1 WHERE id = $2 AND ${column} = $3`, [
          sealField(ring, row.owner!, row.server!, field, value),
          row.id,
          stored,
        ])) as [unknown, number];
        if (updated === 1) report.rotated++;
      }
    }
    return report;
  });
}
