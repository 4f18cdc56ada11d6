import { Body, Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { Public } from '../common/decorators/public.decorator.js';
import { issueCsrfToken, verifyCsrfToken } from '../common/html/csrf.js';
import type { RenderedPage } from '../common/html/page.js';
import { UsersService } from '../users/users.service.js';
import { BrowserSessionService } from './browser-session.service.js';
import { LocalAccountsService } from './local-accounts.service.js';
import { LoginFailure } from './login-failure.js';
import { loginPage, type LoginPageModel } from './login-pages.js';
import { LoginProvidersService } from './login-providers.service.js';
import { LoginUsersService } from './login-users.service.js';
import { DEFAULT_RETURN_TO, safeReturnTo } from './return-to.js';

/**
 * The sign-in pages (issue 13): `GET /login` (providers and password form), `GET /login/:provider`
 * (start at an IdP), `GET /login/:provider/callback`, `POST /login/local`, `POST /logout`.
 * Public routes: they are how a person gets credentials. Forms carry the double-submit CSRF
 * token (common/html/csrf.ts); every answer is a server-rendered page or a 303 redirect to a
 * same-origin path (return-to.ts).
 */
@ApiExcludeController()
@Controller()
@Public()
export class LoginController {
  constructor(
    private readonly sessions: BrowserSessionService,
    private readonly providers: LoginProvidersService,
    private readonly loginUsers: LoginUsersService,
    private readonly local: LocalAccountsService,
    private readonly users: UsersService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('Login');
  }

  @Get('login')
  async page(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Query('return_to') returnToParam: unknown): Promise<void> {
    const returnTo = safeReturnTo(returnToParam) ?? DEFAULT_RETURN_TO;
    const current = await this.sessions.current(request);
    if (current && returnTo !== DEFAULT_RETURN_TO) return this.redirect(reply, returnTo);
    const signedInAs = current ? await this.nameOf(current.userId) : undefined;
    this.send(reply, 200, loginPage(this.model(request, reply, { returnTo, signedInAs })));
  }

  @Get('login/:provider')
  async start(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Param('provider') key: string, @Query('return_to') returnToParam: unknown): Promise<void> {
    const returnTo = safeReturnTo(returnToParam) ?? DEFAULT_RETURN_TO;
    try {
      const provider = this.providers.get(key);
      const location = await provider.start({ request, reply, returnTo });
      void reply.status(303).header('location', location).header('cache-control', 'no-store').send();
    } catch (error) {
      this.fail(request, reply, error, key, returnTo);
    }
  }

  @Get('login/:provider/callback')
  async callback(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Param('provider') key: string): Promise<void> {
    try {
      const provider = this.providers.get(key);
      const { profile, returnTo } = await provider.finish({ request, reply });
      const person = await this.loginUsers.admit(key, profile);
      await this.sessions.start(request, reply, { userId: person.userId, idp: key, amr: profile.amr ?? [], authTime: profile.authTime });
      this.logger.info({ userId: person.userId, provider: key }, 'signed in at identity provider');
      this.redirect(reply, safeReturnTo(returnTo) ?? DEFAULT_RETURN_TO);
    } catch (error) {
      this.fail(request, reply, error, key, DEFAULT_RETURN_TO);
    }
  }

  @Post('login/local')
  @HttpCode(200)
  async localSignIn(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Body() body: unknown): Promise<void> {
    const form = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    const returnTo = safeReturnTo(form.return_to) ?? DEFAULT_RETURN_TO;
    const username = typeof form.username === 'string' ? form.username.slice(0, 100) : '';
    try {
      if (!this.providers.localEnabled) throw new LoginFailure('local_disabled', 404, 'Gatehouse passwords are turned off here; use your identity provider.');
      if (!verifyCsrfToken(request, form.csrf, this.sessions.isSecure)) throw new LoginFailure('csrf', 403, 'This form has expired. Please try again.');
      const userId = await this.local.verify(form.username, form.password, request.ip);
      await this.sessions.start(request, reply, { userId, idp: 'local', amr: ['pwd'] });
      this.logger.info({ userId, provider: 'local' }, 'signed in with a Gatehouse password');
      this.redirect(reply, returnTo);
    } catch (error) {
      this.fail(request, reply, error, 'local', returnTo, username);
    }
  }

  @Post('logout')
  @HttpCode(200)
  async logout(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Body() body: unknown): Promise<void> {
    const form = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    if (!verifyCsrfToken(request, form.csrf, this.sessions.isSecure)) {
      return this.fail(request, reply, new LoginFailure('csrf', 403, 'This form has expired. Please try again.'), 'logout', DEFAULT_RETURN_TO);
    }
    await this.sessions.end(request, reply);
    this.redirect(reply, '/login');
  }

  private model(request: FastifyRequest, reply: FastifyReply, extra: Partial<LoginPageModel> & { returnTo: string }): LoginPageModel {
    return {
      csrf: issueCsrfToken(request, reply, this.sessions.isSecure),
      providers: this.providers.list().map((p) => ({ key: p.key, name: p.name })),
      localEnabled: this.providers.localEnabled,
      ...extra,
    };
  }

  private async nameOf(userId: string): Promise<string> {
    const user = await this.users.byId(userId);
    return user?.displayName ?? user?.email ?? user?.subject ?? userId;
  }

  /** Answers a refused sign-in with the login page and the reason; anything unexpected is logged and shown generically. */
  private fail(request: FastifyRequest, reply: FastifyReply, error: unknown, provider: string, returnTo: string, username?: string): void {
    let failure: LoginFailure;
    if (error instanceof LoginFailure) {
      failure = error;
      this.logger.warn({ provider, code: failure.code }, 'sign-in refused');
    } else {
      this.logger.error({ err: error, provider }, 'sign-in failed');
      failure = new LoginFailure('idp_error', 500, 'Signing in failed on our side. Please try again; if it keeps failing, tell an administrator.');
    }
    if (failure.retryAfterMs) void reply.header('retry-after', String(Math.ceil(failure.retryAfterMs / 1000)));
    this.send(reply, failure.status, loginPage(this.model(request, reply, { returnTo, username, error: { code: failure.code, message: failure.message } })));
  }

  private redirect(reply: FastifyReply, location: string): void {
    void reply.status(303).header('location', location).header('cache-control', 'no-store').send();
  }

  private send(reply: FastifyReply, status: number, page: RenderedPage): void {
    void reply.status(status).headers(page.headers).send(page.body);
  }
}
