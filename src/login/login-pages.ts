import { html, renderPage, type RenderedPage } from '../common/html/page.js';
import { DEFAULT_RETURN_TO } from './return-to.js';

/** A provider button on the login page. */
export interface ProviderLink {
  key: string;
  name: string;
}

/** What the login page shows. */
export interface LoginPageModel {
  csrf: string;
  providers: ProviderLink[];
  localEnabled: boolean;
  returnTo: string;
  /** A refused sign-in: stable code and the message for the person. */
  error?: { code: string; message: string };
  /** Kept in the username field after a failed password sign-in. */
  username?: string;
  /** The person already signed in in this browser. */
  signedInAs?: string;
}

const withReturn = (path: string, returnTo: string) => (returnTo === DEFAULT_RETURN_TO ? path : `${path}?return_to=${encodeURIComponent(returnTo)}`);

/**
 * `/login`: one button per identity provider, the password form (when local accounts are on),
 * or — when signed in — who you are, a way on and a sign-out button. Errors are announced to
 * screen readers (`role="alert"`) and carry their code in `data-error`.
 */
export function loginPage(model: LoginPageModel): RenderedPage {
  const error = model.error && html`<p class="error" role="alert" data-error="${model.error.code}">${model.error.message}</p>`;
  if (model.signedInAs !== undefined) {
    return renderPage({
      title: 'Signed in',
      content: html`${error}<p>You are signed in to Gatehouse as <strong>${model.signedInAs}</strong>.</p>
        ${model.returnTo !== DEFAULT_RETURN_TO && html`<p><a class="button" href="${model.returnTo}">Continue</a></p>`}
        <form method="post" action="/logout"><input type="hidden" name="csrf" value="${model.csrf}"><button type="submit" class="secondary">Sign out</button></form>`,
    });
  }
  const providers = model.providers.map((p) => html`<a class="button" href="${withReturn(`/login/${p.key}`, model.returnTo)}">Sign in with ${p.name}</a> `);
  const local =
    model.localEnabled &&
    html`<form method="post" action="/login/local" class="card" aria-label="Sign in with a Gatehouse password">
      <input type="hidden" name="csrf" value="${model.csrf}">
      <input type="hidden" name="return_to" value="${model.returnTo}">
      <label for="username">Username</label>
      <input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required maxlength="100" value="${model.username ?? ''}">
      <label for="password">Password</label>
      <input type="password" id="password" name="password" autocomplete="current-password" required maxlength="1024">
      <button type="submit">Sign in</button>
    </form>`;
  const none = model.providers.length === 0 && !model.localEnabled && html`<p class="warn">No way to sign in is configured. An administrator sets GATEHOUSE_LOGIN_PROVIDERS or enables local accounts.</p>`;
  return renderPage({
    title: 'Sign in',
    content: html`${error}<p class="muted">Sign in to Gatehouse to continue.</p>
      ${providers.length > 0 && html`<nav aria-label="Identity providers"><p>${providers}</p></nav>`}
      ${providers.length > 0 && model.localEnabled && html`<p class="muted">or with a Gatehouse password:</p>`}
      ${local}${none}`,
  });
}
