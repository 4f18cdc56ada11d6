import type { FastifyReply, FastifyRequest } from 'fastify';
import type Provider from 'oidc-provider';
import { verifyCsrfToken, issueCsrfToken } from '../common/html/csrf.js';
import { html, renderPage, type SafeHtml } from '../common/html/page.js';
import type { AppConfig } from '../config/config.schema.js';
import { redirectNeedsWarning } from './oauth-provider.service.js';
import type { SignedInUserResolver } from './signed-in-user.js';

/** Largest consent form body read (bytes): a CSRF token and a decision. */
const MAX_FORM_BYTES = 4096;
const UID = /^[A-Za-z0-9_-]{1,64}$/;

/** What each scope lets a client do, in words for the consent page. */
const SCOPE_WORDS: Record<string, string> = {
  mcp: 'use the MCP servers behind Gatehouse as you',
  'admin:read': 'read Gatehouse settings',
  'admin:write': 'change Gatehouse settings',
  'servers:write': 'add and change MCP servers',
  openid: 'know who you are',
  profile: 'see your name',
  email: 'see your email address',
  offline_access: 'stay connected when you are away',
};

async function readForm(request: FastifyRequest): Promise<URLSearchParams | undefined> {
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of request.raw as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/**
 * The pages of an authorization in progress (`/interaction/<uid>`, served from the
 * authorization server's mount, not through Nest, so no body parser is involved): the
 * signed-in Gatehouse user is the one who logs in (a browser without one goes to the login page
 * first), and the consent page shows the client's name, logo, redirect host and scopes, with a
 * warning for a redirect that is neither https nor loopback. POST `/interaction/<uid>` carries the
 * decision (CSRF double-submit token; `decision=approve|deny`).
 */
export class InteractionPages {
  constructor(
    private readonly config: AppConfig,
    private readonly resolver: SignedInUserResolver,
  ) {}

  /** Answers `request` (GET or POST /interaction/<uid>) on the raw response. */
  async handle(provider: Provider, request: FastifyRequest, reply: FastifyReply, uid: string): Promise<void> {
    const secure = this.config.http.publicUrl.startsWith('https:');
    if (!UID.test(uid)) return this.page(reply, 400, 'Sign-in could not continue', html`<p class="error">This sign-in link is not valid.</p>`);
    let details: Awaited<ReturnType<Provider['interactionDetails']>>;
    try {
      details = await provider.interactionDetails(request.raw, reply.raw);
    } catch {
      return this.page(reply, 400, 'Sign-in could not continue', html`<p class="error">This sign-in has expired or was started in another browser. Start again from your application.</p>`);
    }
    if (details.uid !== uid) return this.page(reply, 400, 'Sign-in could not continue', html`<p class="error">This sign-in link does not belong to this browser's sign-in.</p>`);
    const user = await this.resolver.current(request);
    if (!user) {
      reply.raw.writeHead(303, { location: this.resolver.loginUrl(`/interaction/${uid}`), 'cache-control': 'no-store' }).end();
      return;
    }
    const login = { accountId: user.userId, ts: user.authTime, ...(user.amr ? { amr: user.amr } : {}) };
    if (details.prompt.name === 'login' || details.session?.accountId !== user.userId) {
      await provider.interactionFinished(request.raw, reply.raw, { login }, { mergeWithLastSubmission: false });
      return;
    }
    const clientId = String(details.params.client_id);
    const client = await provider.Client.find(clientId);
    if (!client) return this.page(reply, 400, 'Sign-in could not continue', html`<p class="error">The application is no longer registered.</p>`);
    if (request.method === 'POST') {
      const form = await readForm(request);
      if (!form || !verifyCsrfToken(request, form.get('csrf'), secure)) {
        return this.page(reply, 403, 'Sign-in could not continue', html`<p class="error">The form expired. Go back and try again.</p>`);
      }
      if (form.get('decision') !== 'approve') {
        await provider.interactionFinished(request.raw, reply.raw, { error: 'access_denied', error_description: 'the user denied the request' }, { mergeWithLastSubmission: false });
        return;
      }
      const grant = details.grantId ? await provider.Grant.find(details.grantId) : new provider.Grant({ accountId: user.userId, clientId });
      if (!grant) return this.page(reply, 400, 'Sign-in could not continue', html`<p class="error">This approval has been revoked. Start again from your application.</p>`);
      const missing = details.prompt.details as { missingOIDCScope?: string[]; missingOIDCClaims?: string[]; missingResourceScopes?: Record<string, string[]> };
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {})) grant.addResourceScope(indicator, scopes.join(' '));
      const grantId = await grant.save();
      await provider.interactionFinished(request.raw, reply.raw, { login, consent: { grantId } }, { mergeWithLastSubmission: true });
      return;
    }
    const missing = details.prompt.details as { missingOIDCScope?: string[]; missingResourceScopes?: Record<string, string[]> };
    const scopes = [...new Set([...(missing.missingOIDCScope ?? []), ...Object.values(missing.missingResourceScopes ?? {}).flat()])];
    const resources = Object.keys(missing.missingResourceScopes ?? {});
    const redirectUri = typeof details.params.redirect_uri === 'string' ? details.params.redirect_uri : '';
    const redirect = URL.parse(redirectUri);
    const logo = typeof client.logoUri === 'string' && client.logoUri.startsWith('https://') ? client.logoUri : undefined;
    const name = client.clientName ?? clientId;
    const csrf = issueCsrfToken(request, reply, secure);
    const content = html`<div class="card">${logo ? html`<img class="logo" src="${logo}" alt="">` : false}<strong>${name}</strong>
        <p class="muted">wants to connect to Gatehouse as you.</p>
        <p>It will return you to <code>${redirect ? (redirect.host || redirect.protocol) : redirectUri}</code>.</p></div>
      ${redirectNeedsWarning(redirectUri) ? html`<p class="warn" role="alert">Careful: this application returns you over an unencrypted connection to another computer (<code>${redirectUri}</code>). Approve only if you trust it.</p>` : false}
      <p>It asks to:</p>
      <ul>${(scopes.length ? scopes : ['mcp']).map((s) => html`<li>${SCOPE_WORDS[s] ?? s} <span class="muted">(${s})</span></li>`)}</ul>
      ${resources.length ? html`<p class="muted">For: ${resources.map((r, i) => html`${i ? ', ' : ''}<code>${r}</code>`)}</p>` : false}
      <p class="muted">Client id: <code>${clientId}</code></p>
      <form method="post" action="/interaction/${uid}">
        <input type="hidden" name="csrf" value="${csrf}">
        <button type="submit" name="decision" value="approve" id="approve">Approve</button>
        <button type="submit" name="decision" value="deny" class="secondary" id="deny">Deny</button>
      </form>`;
    // Chromium applies form-action to the redirects after the POST: allow the client's redirect target.
    const target = redirect ? (redirect.protocol === 'http:' || redirect.protocol === 'https:' ? redirect.origin : redirect.protocol) : undefined;
    return this.page(reply, 200, `Allow ${name}?`, content, target ? [target] : [], logo ? [new URL(logo).origin] : []);
  }

  private page(reply: FastifyReply, status: number, title: string, content: SafeHtml, formActions: string[] = [], imgSources: string[] = []): void {
    const page = renderPage({ title, content, formActions, imgSources });
    const cookie = reply.getHeader('set-cookie');
    reply.raw.writeHead(status, { ...page.headers, ...(cookie ? { 'set-cookie': cookie as string } : {}) }).end(page.body);
  }
}
