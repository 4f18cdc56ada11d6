import { Inject, Injectable } from '@nestjs/common';
import { PinoLogger } from 'nestjs-pino';
import { DataSource, type EntityManager } from 'typeorm';
import { APP_CONFIG } from '../config/config.module.js';
import type { AppConfig } from '../config/config.schema.js';
import { storableIdentity, UsersService } from '../users/users.service.js';
import { LoginFailure } from './login-failure.js';
import type { IdpProfile } from './providers/login-provider.js';

/** The `users.issuer` of people with a Gatehouse password (their `subject` is the username). */
export const LOCAL_ISSUER = 'urn:gatehouse:local';

/** The person a sign-in resolved to. */
export interface SignedInPerson {
  userId: string;
  displayName: string | null;
}

/**
 * Who may sign in at an identity provider, and which `users` row they are (issue 13, "Who may
 * sign in"):
 *
 * - `GATEHOUSE_LOGIN_ALLOWED_DOMAINS`: the email's domain must be listed, and the email verified
 *   (an unverified address proves nothing about the domain).
 * - `GATEHOUSE_LOGIN_REQUIRE_VERIFIED_EMAIL` (default true): an email the IdP did not verify is refused.
 * - One row per person: the IdP's `iss` + `sub` is the identity (`login_identities`, else the
 *   `users` row with that issuer and subject, created on first sight by UsersService). A new
 *   identity links to an existing person only through an email both sides verified — the IdP
 *   now, and an earlier verified sign-in or an admin (local accounts) before — never through an
 *   unverified one (that would let anyone who types a victim's address take over their account).
 * - `GATEHOUSE_LOGIN_GROUP_ROLES`: the roles named there follow the IdP's groups at each sign-in
 *   (granted when in the group, removed when not); other roles stay as admins set them. The
 *   IdP's groups are stored on the user (`users.groups`), where policies match them.
 * - A disabled user is refused.
 */
@Injectable()
export class LoginUsersService {
  constructor(
    private readonly dataSource: DataSource,
    private readonly users: UsersService,
    @Inject(APP_CONFIG) private readonly config: AppConfig,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Login');
  }

  /** Checks `profile` against the sign-in rules and returns its user; throws {@link LoginFailure}. */
  async admit(provider: string, profile: IdpProfile): Promise<SignedInPerson> {
    const rules = this.config.login;
    if (rules.allowedDomains.length > 0) {
      if (!profile.email) throw new LoginFailure('email_missing', 403, 'Your identity provider did not share an email address, which this Gatehouse needs to check your domain.');
      if (!profile.emailVerified) throw new LoginFailure('email_unverified', 403, `Your email address ${profile.email} is not verified at your identity provider.`);
      const domain = profile.email.slice(profile.email.lastIndexOf('@') + 1);
      if (!rules.allowedDomains.includes(domain)) {
        throw new LoginFailure('domain_not_allowed', 403, `Accounts at ${domain} may not sign in to this Gatehouse (allowed: ${rules.allowedDomains.join(', ')}).`);
      }
    }
    if (rules.requireVerifiedEmail && profile.email && !profile.emailVerified) {
      throw new LoginFailure('email_unverified', 403, `Your email address ${profile.email} is not verified at your identity provider.`);
    }
    const identity = storableIdentity({ issuer: profile.issuer, subject: profile.subject, email: profile.email, displayName: profile.displayName, groups: profile.groups });
    const userId = await this.dataSource.transaction((em) => this.resolve(em, provider, profile, identity));
    await this.applyClaims(userId, identity.groups);
    const user = await this.users.byId(userId);
    if (!user) throw new Error(`user ${userId} vanished during sign-in`);
    if (user.disabled) throw new LoginFailure('user_disabled', 403, 'Your Gatehouse account is disabled. Ask an administrator.');
    return { userId, displayName: user.displayName ?? user.email };
  }

  private async resolve(em: EntityManager, provider: string, profile: IdpProfile, identity: ReturnType<typeof storableIdentity>): Promise<string> {
    const verifiedEmail = profile.emailVerified && identity.email ? identity.email : null;
    const [known] = await em.query<{ user_id: string }[]>('SELECT user_id FROM login_identities WHERE issuer = $1 AND subject = $2 FOR UPDATE', [identity.issuer, identity.subject]);
    let userId = known?.user_id ?? (await this.users.idByIdentity(identity.issuer, identity.subject));
    if (!userId && verifiedEmail) {
      const linked = await em.query<{ user_id: string }[]>('SELECT DISTINCT user_id FROM login_identities WHERE lower(email) = $1 AND email_verified', [verifiedEmail]);
      if (linked.length === 1) {
        userId = linked[0].user_id;
        this.logger.info({ userId, provider }, 'new sign-in identity linked to an existing user by verified email');
      }
    }
    userId ??= (await this.users.resolve(identity)).id;
    await em.query(
      `INSERT INTO login_identities (issuer, subject, user_id, provider, email, email_verified) VALUES ($1, $2, $3, $4, $5, $6)
       ON CONFLICT (issuer, subject) DO UPDATE SET provider = EXCLUDED.provider, email = EXCLUDED.email, email_verified = EXCLUDED.email_verified, last_login_at = now()`,
      [identity.issuer, identity.subject, userId, provider, identity.email, profile.emailVerified],
    );
    return userId;
  }

  /** The IdP's groups, and the roles `GATEHOUSE_LOGIN_GROUP_ROLES` manages, onto the user. */
  private async applyClaims(userId: string, groups: string[]): Promise<void> {
    const mapping = this.config.login.groupRoles;
    await this.users.applyClaims(userId, (current) => {
      if (mapping.length === 0) return { roles: current.roles, groups };
      const managed = new Set(mapping.map((m) => m.role));
      const granted = mapping.filter((m) => groups.includes(m.group)).map((m) => m.role);
      return { roles: [...new Set([...current.roles.filter((r) => !managed.has(r)), ...granted])], groups };
    });
  }
}
