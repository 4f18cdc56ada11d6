import { stringFields, topic } from '../database/change-bus.js';

/**
 * Bus topic `secrets.changed`, payload `{ server, owner }`: a secret of `owner` (a user id, a
 * principal id, or `*` for the server's shared ones) for `server` was set or deleted. Published
 * by `SecretsService` inside the writing transaction. Replicas drop the decrypted values they
 * cached (a shared change: every caller of that server) and retire upstream processes started
 * with the old value.
 */
export const SECRETS_CHANGED = topic<{ server: string; owner: string }>('secrets.changed', stringFields('server', 'owner'));
