import type { FastifyReply, FastifyRequest } from 'fastify';
import OAuth2Strategy from 'passport-oauth2';
import type { LoginProviderConfig } from '../../config/login-config.js';
import { claimList } from '../../auth/strategies/credential.js';
import { LoginFailure } from '../login-failure.js';
import type { LoginFlow, LoginFlowStore } from '../login-flow.store.js';
import { text, type IdpProfile, type LoginContext, type LoginProvider } from './login-provider.js';

type OAuth2Config = Extract<LoginProviderConfig, { type: 'oauth2' }>;

/** Userinfo answers larger than this are refused (bytes). */
const MAX_USERINFO_BYTES = 256 * 1024;
const USERINFO_TIMEOUT_MS = 10_000;

/** The request object handed to passport-oauth2: what it reads, plus our context for the state store. */
interface StrategyRequest {
  query: Record<string, unknown>;
  body?: unknown;
  url: string;
  headers: FastifyRequest['headers'];
  gatehouse: { request: FastifyRequest; reply?: FastifyReply; returnTo?: string; flow?: LoginFlow };
}

type Outcome = { redirect: string } | { profile: Record<string, unknown> };

/**
 * passport-oauth2 with a profile read from a configured userinfo URL (GitHub's `/user`, or any
 * JSON endpoint that answers a bearer token).
 */
class UserinfoStrategy extends OAuth2Strategy {
  constructor(
    options: OAuth2Strategy.StrategyOptions,
    private readonly userinfoUrl: string,
  ) {
    super(options, (_accessToken: string, _refreshToken: string, profile: unknown, done: OAuth2Strategy.VerifyCallback) => done(null, profile as Express.User));
  }

  override userProfile(accessToken: string, done: (err?: unknown, profile?: unknown) => void): void {
    fetchUserinfo(this.userinfoUrl, accessToken).then(
      (profile) => done(null, profile),
      (error: unknown) => done(error),
    );
  }
}

async function fetchUserinfo(url: string, accessToken: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, {
    headers: { authorization: `Bearer ${accessToken}`, accept: 'application/json', 'user-agent': 'Gatehouse' },
    redirect: 'error',
    signal: AbortSignal.timeout(USERINFO_TIMEOUT_MS),
  });
  if (!response.ok) throw new Error(`the userinfo endpoint answered ${response.status}`);
  const body = await response.text();
  if (body.length > MAX_USERINFO_BYTES) throw new Error('the userinfo answer is too large');
  const json = JSON.parse(body) as unknown;
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error('the userinfo answer is not a JSON object');
  return json as Record<string, unknown>;
}

/**
 * A plain OAuth 2.0 provider (GitHub-like: no ID token) through `passport-oauth2`: authorization
 * code with PKCE S256 and `state`, kept in {@link LoginFlowStore} through passport-oauth2's
 * custom state-store hook (so any replica finishes the callback), then the person read from the
 * userinfo URL. The strategy runs without passport's middleware: its `redirect`/`success`/
 * `fail`/`error` actions are attached per call, as passport itself does.
 */
export class OAuth2Login implements LoginProvider {
  readonly type = 'oauth2';
  readonly name: string;
  private readonly strategy: UserinfoStrategy;
  private readonly issuer: string;

  constructor(
    private readonly config: OAuth2Config,
    callbackUrl: string,
    private readonly flows: LoginFlowStore,
    private readonly secure: boolean,
  ) {
    this.name = config.name ?? new URL(config.authorizationUrl).hostname;
    this.issuer = config.issuer ?? new URL(config.authorizationUrl).origin;
    const key = config.key;
    const store = {
      store(req: StrategyRequest, verifier: string, _state: unknown, _meta: unknown, done: (err: Error | null, state?: string) => void): void {
        const { request, reply, returnTo } = req.gatehouse;
        flows.begin(request, reply!, secure, { provider: key, nonce: null, codeVerifier: verifier, returnTo: returnTo! }).then(
          (state) => done(null, state),
          (error: Error) => done(error),
        );
      },
      verify(req: StrategyRequest, state: string, done: (err: Error | null, ok?: string | false) => void): void {
        flows.finish(req.gatehouse.request, secure, key, state).then(
          (flow) => {
            req.gatehouse.flow = flow;
            done(null, flow.codeVerifier);
          },
          (error: Error) => done(error),
        );
      },
    };
    this.strategy = new UserinfoStrategy(
      {
        authorizationURL: config.authorizationUrl,
        tokenURL: config.tokenUrl,
        clientID: config.clientId,
        clientSecret: config.clientSecret ?? '',
        callbackURL: callbackUrl,
        scope: config.scope,
        pkce: 'S256' as unknown as boolean,
        store: store as unknown as OAuth2Strategy.StateStore,
      },
      config.userinfoUrl,
    );
  }

  get key(): string {
    return this.config.key;
  }

  private run(req: StrategyRequest): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      // passport's way: a per-request object inheriting from the strategy, given the actions.
      const call = Object.create(this.strategy) as UserinfoStrategy & Record<string, unknown>;
      call.redirect = (url: string) => resolve({ redirect: url });
      call.success = (user: Record<string, unknown>) => resolve({ profile: user });
      call.fail = (info: unknown) => {
        const message = typeof info === 'object' && info !== null ? (info as { message?: unknown }).message : undefined;
        reject(new LoginFailure('access_denied', 403, `${this.name} did not let you sign in${typeof message === 'string' ? ` (${message.slice(0, 160)})` : ''}.`));
      };
      call.error = (error: unknown) => reject(error instanceof Error ? error : new Error(String(error)));
      call.pass = () => reject(new LoginFailure('invalid_response', 400, `${this.name} sent an answer without a code`));
      call.authenticate(req as never, {});
    });
  }

  async start({ request, reply, returnTo }: LoginContext): Promise<string> {
    const outcome = await this.run({ query: {}, url: request.url, headers: request.headers, gatehouse: { request, reply, returnTo } });
    if (!('redirect' in outcome)) throw new Error('passport-oauth2 did not redirect at the start of a sign-in');
    return outcome.redirect;
  }

  async finish({ request }: { request: FastifyRequest }): Promise<{ profile: IdpProfile; returnTo: string }> {
    const query = { ...(request.query as Record<string, unknown>) };
    const req: StrategyRequest = { query, url: request.url, headers: request.headers, gatehouse: { request } };
    // Without a code or an error passport-oauth2 would start a new flow: refuse instead.
    if (typeof query.code !== 'string' && typeof query.error !== 'string') throw new LoginFailure('invalid_response', 400, `${this.name} sent an answer without a code`);
    if (typeof query.error === 'string') {
      // The flow ends either way, so the same state cannot be used again.
      await this.flows.finish(request, this.secure, this.key, query.state).catch(() => undefined);
      throw new LoginFailure(query.error === 'access_denied' ? 'access_denied' : 'idp_error', query.error === 'access_denied' ? 403 : 400, `${this.name} refused the sign-in: ${query.error.slice(0, 100)}.`);
    }
    let outcome: Outcome;
    try {
      outcome = await this.run(req);
    } catch (error) {
      if (error instanceof LoginFailure) throw error;
      throw new LoginFailure('idp_error', 502, `${this.name} did not complete the sign-in (${((error as Error).message ?? 'error').slice(0, 160)}). Please try again.`);
    }
    if (!('profile' in outcome) || !req.gatehouse.flow) throw new Error('passport-oauth2 finished without a profile');
    return { profile: this.toProfile(outcome.profile), returnTo: req.gatehouse.flow.returnTo };
  }

  private toProfile(info: Record<string, unknown>): IdpProfile {
    const subjectValue = this.config.subjectClaim ? info[this.config.subjectClaim] : (info.sub ?? info.id);
    const subject = typeof subjectValue === 'number' || typeof subjectValue === 'string' ? String(subjectValue) : '';
    if (subject === '') throw new LoginFailure('invalid_response', 502, `${this.name}'s userinfo answer does not identify the person (no ${this.config.subjectClaim ?? 'sub or id'} field)`);
    const email = text(info.email)?.toLowerCase() ?? null;
    return {
      issuer: this.issuer,
      subject,
      email,
      emailVerified: email !== null && (info.email_verified === true || this.config.trustEmail === true),
      displayName: text(info.name) ?? text(info.login) ?? text(info.preferred_username),
      groups: claimList(info, this.config.groupsClaim ?? 'groups'),
    };
  }
}
