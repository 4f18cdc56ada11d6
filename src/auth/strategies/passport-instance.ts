import passport from 'passport';

/**
 * `PassportStrategy` registers each strategy on passport's global instance when constructed.
 * Gatehouse keeps one Passport instance per application (several apps may share a process,
 * e.g. in tests, each with its own configuration), so strategies hand the mixin this unused
 * instance and {@link AuthenticationService} registers them on its own.
 */
export const isolatedPassport = new passport.Passport();
