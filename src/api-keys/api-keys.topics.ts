import { stringFields, topic } from '../database/change-bus.js';

/**
 * Bus topic `api_keys.changed`, payload `{ id }`: the key that was revoked. Published by
 * `ApiKeysService.revoke` inside the writing transaction; every replica drops the key from its
 * cache (and discards a verification of it in flight).
 */
export const API_KEYS_CHANGED = topic<{ id: string }>('api_keys.changed', stringFields('id'));
