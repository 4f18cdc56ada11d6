import type { FastifyRequest } from 'fastify';

// The login module owns the shape (its BrowserSessionService returns it); one definition.
import type { SignedInUser } from '../login/signed-in-user.js';

export type { SignedInUser };

/** Who is signed in to this browser, and where to send one who is not. */
export interface SignedInUserResolver {
  /** The signed-in user of this request's session cookie, or null (expired, revoked, disabled user). */
  current(request: FastifyRequest): Promise<SignedInUser | null>;
  /** Where to send a browser that must sign in first; `returnTo` is a same-origin path ('/…'). */
  loginUrl(returnTo: string): string;
}

/**
 * Injection token of the {@link SignedInUserResolver} the consent and device pages use. Bound to
 * the login module's `BrowserSessionService` when both are present; until then to
 * {@link NoSignInResolver} (nobody is ever signed in), and tests bind their own.
 */
export const SIGNED_IN_USER_RESOLVER = Symbol('SIGNED_IN_USER_RESOLVER');

/** Default resolver without a login module: nobody is signed in; the login URL is `/login?return_to=…`. */
export class NoSignInResolver implements SignedInUserResolver {
  current(): Promise<SignedInUser | null> {
    return Promise.resolve(null);
  }
  loginUrl(returnTo: string): string {
    return `/login?return_to=${encodeURIComponent(returnTo)}`;
  }
}

/**
 * The default binding of {@link SIGNED_IN_USER_RESOLVER}: delegates to {@link NoSignInResolver}
 * until {@link use} swaps in another resolver (tests sign a user in with their own; the login
 * module replaces the binding outright).
 */
export class SignedInUserSlot implements SignedInUserResolver {
  private inner: SignedInUserResolver = new NoSignInResolver();
  use(resolver: SignedInUserResolver): void {
    this.inner = resolver;
  }
  current(request: FastifyRequest): Promise<SignedInUser | null> {
    return this.inner.current(request);
  }
  loginUrl(returnTo: string): string {
    return this.inner.loginUrl(returnTo);
  }
}
