/**
 * CSRF protection for the forms on Gatehouse's own pages (login, consent, device code, connect).
 *
 * Double-submit cookie (OWASP CSRF Prevention Cheat Sheet, "Signed Double-Submit Cookie" without
 * the signature, which the other layers make unnecessary here): a random token in a `SameSite=Strict`,
 * `HttpOnly`, path-`/` cookie (named with the `__Host-` prefix when served over https, so no
 * subdomain can plant one) must equal the `csrf` field of the form. Two further layers stand in
 * front of it: the global Host/Origin hook refuses unsafe cross-site methods whose `Origin` is not
 * allowed (common/http/host-origin.ts), and the pages forbid framing (`frame-ancestors 'none'`).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { parseCookie, stringifySetCookie } from 'cookie';
import type { FastifyReply, FastifyRequest } from 'fastify';

const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** The CSRF cookie's name: `__Host-gatehouse_csrf` on https, `gatehouse_csrf` on plain http (local use). */
export function csrfCookieName(secure: boolean): string {
  return secure ? '__Host-gatehouse_csrf' : 'gatehouse_csrf';
}

function cookieToken(request: FastifyRequest, secure: boolean): string | undefined {
  const header = request.headers.cookie;
  if (!header) return undefined;
  const value = parseCookie(header)[csrfCookieName(secure)];
  return value && TOKEN.test(value) ? value : undefined;
}

/**
 * The token to put in a form's hidden `csrf` field. Reuses the request's cookie when it holds a
 * well-formed token (several tabs keep working), otherwise sets a new cookie on `reply`.
 *
 * @param secure true when the page is served over https (PUBLIC_URL's scheme)
 * @returns 43 characters of base64url (256 random bits)
 */
export function issueCsrfToken(request: FastifyRequest, reply: FastifyReply, secure: boolean): string {
  const existing = cookieToken(request, secure);
  if (existing) return existing;
  const token = randomBytes(32).toString('base64url');
  void reply.header(
    'set-cookie',
    stringifySetCookie({ name: csrfCookieName(secure), value: token, httpOnly: true, secure, sameSite: 'strict', path: '/' }),
  );
  return token;
}

/**
 * True when `submitted` (the form's `csrf` field) equals the request's CSRF cookie, compared in
 * constant time. False when either is missing or malformed.
 */
export function verifyCsrfToken(request: FastifyRequest, submitted: unknown, secure: boolean): boolean {
  const expected = cookieToken(request, secure);
  if (!expected || typeof submitted !== 'string' || !TOKEN.test(submitted)) return false;
  return timingSafeEqual(Buffer.from(expected), Buffer.from(submitted));
}
