import { createHash } from 'node:crypto';
import { Injectable } from '@nestjs/common';
import { InjectDataSource } from '@nestjs/typeorm';
import type { DataSource } from 'typeorm';
import { stringFields, topic } from '../database/change-bus.js';
import type { UpstreamConnection } from './upstream-connection.js';
import type { UpstreamServerEntity } from './upstream-server.entity.js';

/** A server's offerings as a connection lists them. */
export type Offerings = ReturnType<UpstreamConnection['offerings']>;

/**
 * Bus topic `upstream-listings.changed`, payload `{ server }`: a replica stored a new listing of
 * the per-user server; the others read it again (see {@link ListingStore}).
 */
export const UPSTREAM_LISTING_CHANGED = topic<{ server: string }>('upstream-listings.changed', stringFields('server'));

/**
 * What identifies the upstream a listing came from (transport, URL, command, args), hashed
 * (SHA-256, hex): a stored listing counts only for a server still configured with the same.
 * Headers, env and OAuth settings are left out (they hold secrets, and change who is asked,
 * not what is offered).
 */
export function listingKey(server: UpstreamServerEntity): string {
  return createHash('sha256').update(JSON.stringify([server.transport, server.url ?? null, server.command ?? null, server.args ?? []])).digest('hex');
}

/**
 * The last listing of each per-user server (table `upstream_listings`, one row per server),
 * written when a caller's own connection lists what the server offers (CallerListing) and read
 * by every replica, so users who have not connected still see the server's tools — the last
 * ones any caller was shown, not necessarily what the upstream would list now.
 */
@Injectable()
export class ListingStore {
  constructor(@InjectDataSource() private readonly dataSource: DataSource) {}

  /** The stored listings of `servers` made with configuration `keys[i]` (a row with another key is left out). */
  async read(servers: { name: string; key: string }[]): Promise<Map<string, Offerings>> {
    const found = new Map<string, Offerings>();
    if (servers.length === 0) return found;
    const rows = await this.dataSource.query<{ server: string; config_key: string; offerings: Offerings }[]>(
      'SELECT server, config_key, offerings FROM upstream_listings WHERE server = ANY($1::text[])',
      [servers.map((s) => s.name)],
    );
    for (const row of rows) if (servers.some((s) => s.name === row.server && s.key === row.config_key)) found.set(row.server, row.offerings);
    return found;
  }

  /** Stores (or replaces) the listing of `server`. */
  async write(server: string, key: string, offerings: Offerings): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO upstream_listings (server, config_key, offerings) VALUES ($1, $2, $3)
       ON CONFLICT (server) DO UPDATE SET config_key = EXCLUDED.config_key, offerings = EXCLUDED.offerings, updated_at = now()`,
      [server, key, JSON.stringify(offerings)],
    );
  }
}
