import { stringFields, topic } from '../database/change-bus.js';

/**
 * Bus topic `upstream-oauth.changed`, payload `{ server, owner }`: the OAuth connection of
 * `owner` (a user id, a principal id, or `*` for the shared one) to `server` was stored,
 * refreshed, marked `needs_reauth` or deleted. Published inside the writing transaction by
 * `UpstreamConnectionsService`; every replica drops the tokens it cached for it.
 */
export const UPSTREAM_OAUTH_CHANGED = topic<{ server: string; owner: string }>('upstream-oauth.changed', stringFields('server', 'owner'));
