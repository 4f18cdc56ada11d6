/** Redirects followed per request, at most. */
export const MAX_REDIRECTS = 5;

/**
 * A `fetch` for the SDK client transports of a server whose config lists `redirectOrigins`:
 * follows 307/308 (RFC 9110 §15.4.8/9: method and body kept; a GET also 301/302/303) to the
 * URL's own origin or one of `origins`, at most {@link MAX_REDIRECTS} times, and hands any
 * other redirect back unfollowed (the SDK then names it). Without such a list the SDK's own
 * same-origin policy applies, which is the same rule with only the URL's origin.
 */
export function fetchWithinOrigins(origins: ReadonlySet<string>): typeof fetch {
  return async (input, init) => {
    let current = new URL(input instanceof Request ? input.url : String(input));
    const method = (init?.method ?? 'GET').toUpperCase();
    const allowed = new Set([current.origin, ...origins]);
    for (let followed = 0; ; followed++) {
      const response = await fetch(current, { ...init, redirect: 'manual' });
      const location = response.headers.get('location');
      const redirect = location !== null && (response.status === 307 || response.status === 308 || (method === 'GET' && [301, 302, 303].includes(response.status)));
      if (!redirect || followed >= MAX_REDIRECTS) return response;
      const next = new URL(location, current);
      if (!allowed.has(next.origin) || next.username || next.password) return response;
      await response.body?.cancel().catch(() => undefined);
      current = next;
    }
  };
}
