import { Body, Controller, Get, HttpCode, Param, Post, Query, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { Public } from '../common/decorators/public.decorator.js';
import { AppError } from '../common/errors/app-error.js';
import { ErrorCode } from '../common/errors/error-code.js';
import { issueCsrfToken, verifyCsrfToken } from '../common/html/csrf.js';
import type { RenderedPage } from '../common/html/page.js';
import { BrowserSessionService } from '../login/browser-session.service.js';
import type { SignedInUser } from '../login/signed-in-user.js';
import { UpstreamConnectionsService } from '../upstream-oauth/upstream-connections.service.js';
import { UsersService } from '../users/users.service.js';
import { CLIENT_METADATA_PATH, CONNECT_CALLBACK_PATH, ConnectFailure, ConnectFlowService, type CallbackQuery } from './connect-flow.service.js';
import { ConnectLinks, type ConnectReference } from './connect-links.service.js';
import { connectedPage, connectErrorPage, connectPage } from './connect-pages.js';

/**
 * The browser side of connecting an account to an upstream MCP server (issue 14):
 *
 * - `GET /connect/<server>[?ref=…]`: requires a signed-in Gatehouse user (else the sign-in page,
 *   and back); with a link's `ref`, that user must be the one the link was made for (else
 *   nothing happens and the page says so); shows what will be asked and a Connect button.
 * - `POST /connect/<server>` (CSRF token, `ref`): starts the authorization (see
 *   {@link ConnectFlowService.start}) and redirects to the authorization server.
 * - `GET /upstream-oauth/callback`: the redirect URI; finishes the flow and shows "connected".
 * - `GET /upstream-oauth/client.json`: Gatehouse's Client ID Metadata Document (https deployments).
 *
 * Public routes (no API credentials: a browser); who may act is the browser session's user.
 */
@ApiExcludeController()
@Controller()
@Public()
export class ConnectController {
  constructor(
    private readonly sessions: BrowserSessionService,
    private readonly flows: ConnectFlowService,
    private readonly links: ConnectLinks,
    private readonly connections: UpstreamConnectionsService,
    private readonly users: UsersService,
    private readonly logger: PinoLogger,
  ) {
    logger.setContext('UpstreamConnect');
  }

  @Get('connect/:server')
  async page(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Param('server') server: string, @Query('ref') ref: unknown): Promise<void> {
    try {
      const user = await this.signedIn(request, reply);
      if (!user) return;
      const reference = this.reference(server, ref, user);
      const template = this.flows.connectable(server);
      const authorizationOrigin = await this.flows.authorizationOrigin(server);
      const current = await this.connections.get(server, user.userId);
      this.send(
        reply,
        200,
        connectPage({
          server,
          signedInAs: await this.nameOf(user.userId),
          csrf: issueCsrfToken(request, reply, this.sessions.isSecure),
          ref: typeof ref === 'string' && reference ? ref : undefined,
          authorizationOrigin,
          scopes: [...new Set([...template.scopes, ...(reference?.scopes ?? [])])],
          stepUp: (reference?.scopes.length ?? 0) > 0,
          current: current ? { account: current.account, status: current.status } : undefined,
        }),
      );
    } catch (error) {
      this.fail(reply, server, error);
    }
  }

  @Post('connect/:server')
  @HttpCode(200)
  async start(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Param('server') server: string, @Body() body: unknown): Promise<void> {
    const form = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    try {
      const user = await this.signedIn(request, reply, `/connect/${server}${typeof form.ref === 'string' ? `?ref=${form.ref}` : ''}`);
      if (!user) return;
      if (!verifyCsrfToken(request, form.csrf, this.sessions.isSecure)) throw new ConnectFailure('csrf', 403, 'This form has expired. Open the link from your MCP client again.');
      const reference = this.reference(server, form.ref, user);
      const location = await this.flows.start(server, user.userId, reference?.scopes ?? []);
      void reply.status(303).header('location', location.href).header('cache-control', 'no-store').send();
    } catch (error) {
      this.fail(reply, server, error);
    }
  }

  @Get(CONNECT_CALLBACK_PATH.slice(1))
  async callback(@Req() request: FastifyRequest, @Res() reply: FastifyReply, @Query() query: CallbackQuery): Promise<void> {
    try {
      const user = await this.signedIn(request, reply);
      if (!user) return;
      const { server, connection } = await this.flows.finish(query ?? {}, user.userId);
      this.send(reply, 200, connectedPage(server, connection.account, connection.scopes));
    } catch (error) {
      this.fail(reply, undefined, error);
    }
  }

  @Get(CLIENT_METADATA_PATH.slice(1))
  metadataDocument(@Res() reply: FastifyReply): void {
    const document = this.flows.clientMetadataDocument();
    // The standard error envelope (code, message, requestId) through the global filter.
    if (!document) throw new AppError(ErrorCode.NotFound, 'Gatehouse publishes its client metadata document only when PUBLIC_URL is https');
    void reply.status(200).header('content-type', 'application/json').header('cache-control', 'public, max-age=3600').send(document);
  }

  /** The signed-in user, or null after redirecting the browser to sign in (and back to `returnTo`, default this URL). */
  private async signedIn(request: FastifyRequest, reply: FastifyReply, returnTo = request.url): Promise<SignedInUser | null> {
    const user = await this.sessions.current(request);
    if (user) return user;
    void reply.status(303).header('location', this.sessions.loginUrl(returnTo)).header('cache-control', 'no-store').send();
    return null;
  }

  /**
   * A link's reference checked against the page's server and the signed-in user; undefined
   * without one (a user opening `/connect/<server>` themselves connects their own account).
   * @throws ConnectFailure `link_invalid` (400), `link_expired` (410), `other_user` (403)
   */
  private reference(server: string, ref: unknown, user: SignedInUser): ConnectReference | undefined {
    if (ref === undefined || ref === '') return undefined;
    const read = this.links.read(server, ref);
    if (read === 'invalid') throw new ConnectFailure('link_invalid', 400, `This connect link for server "${server}" is not valid (altered, or made for another server). Run the call in your MCP client again for a new link.`);
    if (read === 'expired') throw new ConnectFailure('link_expired', 410, `This connect link for server "${server}" has expired. Run the call in your MCP client again for a new link.`);
    if (read.owner !== user.userId) {
      this.logger.warn({ server, linkFor: read.owner, signedIn: user.userId }, 'connect link opened by another Gatehouse user; nothing connected');
      throw new ConnectFailure(
        'other_user',
        403,
        `This link was made for another Gatehouse user, not for you. Nothing was connected. If it is yours, sign out and sign in as the user your MCP client uses.`,
      );
    }
    return read;
  }

  private async nameOf(userId: string): Promise<string> {
    const user = await this.users.byId(userId);
    return user?.displayName ?? user?.email ?? user?.subject ?? userId;
  }

  private fail(reply: FastifyReply, server: string | undefined, error: unknown): void {
    if (error instanceof ConnectFailure) {
      this.send(reply, error.status, connectErrorPage(error.code === 'other_user' ? 'Not your link' : 'Not connected', error.code, error.message));
      return;
    }
    this.logger.error({ err: error, server }, 'upstream connect page failed');
    this.send(reply, 500, connectErrorPage('Not connected', 'internal', 'Connecting failed on our side. Please try again; if it keeps failing, tell an administrator.'));
  }

  private send(reply: FastifyReply, status: number, page: RenderedPage): void {
    void reply.status(status).headers(page.headers).send(page.body);
  }
}
