import { stringFields, topic } from '../database/change-bus.js';

/**
 * Bus topic `users.changed`, payload `{ id }`: the user whose roles or `disabled` flag changed.
 * Published by `UsersService.patch` inside the writing transaction; every replica drops what it
 * cached for that user (users, token principals, API keys acting for them).
 */
export const USERS_CHANGED = topic<{ id: string }>('users.changed', stringFields('id'));
