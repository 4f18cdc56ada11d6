import { html, renderPage, type RenderedPage } from '../common/html/page.js';

/** What the connect page shows before the browser goes to the upstream's authorization server. */
export interface ConnectPageModel {
  server: string;
  /** Who is signed in to Gatehouse (display name or email). */
  signedInAs: string;
  csrf: string;
  /** The link's reference, passed on by the form (absent when the page was opened without one). */
  ref?: string;
  /** The authorization server's origin (shown, and allowed as the form's redirect target). */
  authorizationOrigin: string;
  /** Scopes that will be asked for (empty: what the upstream names). */
  scopes: string[];
  /** Why the MCP call asked (`needs_reauth`, `insufficient_scope`), if the link said so. */
  stepUp: boolean;
  /** The account already connected, if any. */
  current?: { account: string | null; status: string };
}

/**
 * `GET /connect/<server>`: what will happen (which server, which authorization server, which
 * scopes, as which Gatehouse user) and one button that starts the authorization (a POST with the
 * CSRF token; the response redirects to the authorization server, whose origin the CSP's
 * `form-action` therefore names).
 */
export function connectPage(model: ConnectPageModel): RenderedPage {
  const current =
    model.current &&
    html`<p class="muted" data-current="${model.current.status}">Already connected${model.current.account ? html` as <strong>${model.current.account}</strong>` : ''}${model.current.status === 'needs_reauth' ? ' — the connection must be renewed' : ''}. Connecting again replaces it.</p>`;
  return renderPage({
    title: `Connect ${model.server}`,
    formActions: [model.authorizationOrigin],
    content: html`<p>The MCP server <strong>${model.server}</strong> acts on your behalf with your own account there. Connect it once; Gatehouse keeps the token encrypted, refreshes it, and never shows it to your MCP client.</p>
      <div class="card">
        <p>Gatehouse user: <strong data-user>${model.signedInAs}</strong></p>
        <p>You will sign in and approve at <code>${model.authorizationOrigin}</code>.</p>
        ${model.scopes.length > 0 ? html`<p>Access asked for: ${model.scopes.map((s, i) => html`${i > 0 ? ', ' : ''}<code>${s}</code>`)}</p>` : ''}
        ${model.stepUp ? html`<p class="warn">The server needs more access than your current connection grants.</p>` : ''}
      </div>
      ${current}
      <form method="post" action="/connect/${model.server}">
        <input type="hidden" name="csrf" value="${model.csrf}">
        ${model.ref ? html`<input type="hidden" name="ref" value="${model.ref}">` : ''}
        <button type="submit">Connect ${model.server}</button>
      </form>`,
  });
}

/** The callback's success page: what was connected, and to go back to the MCP client. */
export function connectedPage(server: string, account: string | null, scopes: string[]): RenderedPage {
  return renderPage({
    title: 'Connected',
    content: html`<p data-connected="${server}">Your account${account ? html` <strong>${account}</strong>` : ''} is connected to <strong>${server}</strong>${scopes.length > 0 ? html` (access: ${scopes.join(' ')})` : ''}.</p>
      <p><strong>Go back to your MCP client</strong> and run the call again; it now works as you. You can close this tab.</p>`,
  });
}

/** A refusal or failure: the message for the person, its stable code in `data-error`, and that nothing was connected. */
export function connectErrorPage(title: string, code: string, message: string): RenderedPage {
  return renderPage({
    title,
    content: html`<p class="error" role="alert" data-error="${code}">${message}</p>
      <p class="muted">To try again, run the call in your MCP client again and open the new link it gives.</p>`,
  });
}
