import { Inject, Injectable } from '@nestjs/common';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { KEY_RING } from '../secrets/key-ring.provider.js';
import type { KeyRing } from '../secrets/secret-crypto.js';
import { openField, sealField, SHARED_CONNECTION_OWNER } from '../upstream-oauth/token-sealing.js';

/** What a connect link's reference says: whose account to connect, until when, with which scopes. */
export interface ConnectReference {
  /** The connection owner the link was made for (the MCP principal's users.id). */
  owner: string;
  /** ms since the epoch. */
  expiresAt: number;
  /** Scopes to ask for (a step-up's union); empty: the server's configured scopes. */
  scopes: string[];
}

/** Why a reference was not accepted: `expired` (past its lifetime) or `invalid` (altered, another server's, a key no longer held). */
export type ReferenceProblem = 'expired' | 'invalid';

/** The largest reference accepted (base64url text); a real one is ~200 characters. */
const MAX_REFERENCE = 2048;

/**
 * The links an MCP client is handed when a call needs the caller's upstream account
 * (`PUBLIC_URL/connect/<server>?ref=…`). The reference is sealed with the key ring
 * (AES-256-GCM; additional data: owner `*`, the server, `upstream-oauth:connect_link`), so it
 * cannot be forged, altered, or moved to another server's page, and it expires after
 * GATEHOUSE_UPSTREAM_CONNECT_LINK_TTL. It names the user the link was made for: the connect
 * page connects nothing when another Gatehouse user is signed in (a link pasted into a chat
 * must not connect the reader's account to the sender's MCP session, or the reverse).
 *
 * The link carries no token and grants nothing by itself: the page still requires the signed-in
 * user, and the authorization happens at the upstream's authorization server.
 */
@Injectable()
export class ConnectLinks {
  private readonly ttlMs: number;
  private readonly publicUrl: string;

  constructor(
    @Inject(KEY_RING) private readonly ring: KeyRing,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    this.ttlMs = config.upstreamConnect.linkTtlMs;
    this.publicUrl = config.http.publicUrl;
  }

  /**
   * The connect page's URL for `owner` (a users.id) and `server`, valid for
   * GATEHOUSE_UPSTREAM_CONNECT_LINK_TTL from `now` (ms since the epoch).
   */
  linkFor(server: string, owner: string, scopes: readonly string[] = [], now = Date.now()): string {
    const payload = JSON.stringify({ o: owner, x: now + this.ttlMs, ...(scopes.length > 0 ? { s: [...scopes] } : {}) });
    const ref = Buffer.from(sealField(this.ring, SHARED_CONNECTION_OWNER, server, 'connect_link', payload)).toString('base64url');
    return `${this.publicUrl}/connect/${encodeURIComponent(server)}?ref=${ref}`;
  }

  /** Reads a link's `ref` for `server`: the reference, or why it is refused. Never throws. */
  read(server: string, ref: unknown, now = Date.now()): ConnectReference | ReferenceProblem {
    if (typeof ref !== 'string' || ref.length === 0 || ref.length > MAX_REFERENCE || !/^[A-Za-z0-9_-]+$/.test(ref)) return 'invalid';
    let parsed: { o?: unknown; x?: unknown; s?: unknown };
    try {
      parsed = JSON.parse(openField(this.ring, SHARED_CONNECTION_OWNER, server, 'connect_link', Buffer.from(ref, 'base64url').toString('utf8'))) as typeof parsed;
    } catch {
      return 'invalid';
    }
    if (typeof parsed.o !== 'string' || typeof parsed.x !== 'number') return 'invalid';
    if (parsed.x <= now) return 'expired';
    const scopes = Array.isArray(parsed.s) ? parsed.s.filter((s): s is string => typeof s === 'string') : [];
    return { owner: parsed.o, expiresAt: parsed.x, scopes };
  }
}
