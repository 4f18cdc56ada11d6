import type { Clock } from '../upstreams/clock.js';

/**
 * Nest token of the sign-in services' clock (browser-session expiry, flow expiry). Production
 * binds the system clock; tests pass a fake clock to move past a session's expiry without waiting.
 */
export const LOGIN_CLOCK = Symbol('LOGIN_CLOCK');
export type LoginClock = Pick<Clock, 'now'>;
