/**
 * Server-rendered HTML for the few pages a person sees (login, consent, device code, connect).
 *
 * No template engine: the pages are small, and a tagged template that escapes every
 * interpolation by default is the whole safety property we need (OWASP XSS Prevention Cheat
 * Sheet, rule #1: HTML-encode untrusted data in element content and quoted attributes). A value
 * is inserted unescaped only when it is already a `SafeHtml` (built by `html` itself).
 *
 * Pages carry no external assets (no CDN, fonts or scripts): one inline stylesheet allowed by a
 * per-response CSP nonce, readable at 320 px wide, keyboard-accessible (native form controls,
 * visible focus ring, labels bound to inputs).
 */
import { randomBytes } from 'node:crypto';

/** HTML that is already escaped; only `html` and `rawHtml` make one. */
export class SafeHtml {
  /** @param value markup that is safe to insert as is */
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;' };

/** Escapes text for element content and quoted attribute values. `null`/`undefined` render as ''. */
export function escapeHtml(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text: string;
  if (typeof value === 'string') text = value;
  else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') text = `${value}`;
  else text = JSON.stringify(value) ?? '';
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

function render(value: unknown): string {
  if (value instanceof SafeHtml) return value.value;
  if (Array.isArray(value)) return value.map(render).join('');
  if (value === false) return '';
  return escapeHtml(value);
}

/**
 * Tagged template: `html\`<p>${name}</p>\`` escapes `name`; arrays are joined; `false`, `null` and
 * `undefined` render nothing (so `${cond && html\`…\`}` works); nested `html` results are kept.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): SafeHtml {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1];
  return new SafeHtml(out);
}

/** Marks trusted, constant markup as safe. Never pass anything derived from a request. */
export function rawHtml(markup: string): SafeHtml {
  return new SafeHtml(markup);
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--accent:#0b5cad;--warn:#9a3412;--warnbg:#fff7ed}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#9da7b3;--line:#30363d;--accent:#58a6ff;--warn:#fdba74;--warnbg:#2a1a0e}}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:34rem;margin:0 auto;padding:1.5rem 1rem}h1{font-size:1.4rem;margin:0 0 1rem}
p,ul{margin:0 0 1rem}.muted{color:var(--muted)}.warn{color:var(--warn);background:var(--warnbg);border:1px solid var(--warn);border-radius:6px;padding:.6rem .8rem}
.error{color:#b91c1c;font-weight:600}label{display:block;font-weight:600;margin:.8rem 0 .3rem}
input[type=text],input[type=email],input[type=password]{width:100%;font:inherit;padding:.55rem .6rem;border:1px solid var(--line);border-radius:6px;background:var(--bg);color:var(--fg)}
button,.button{display:inline-block;font:inherit;padding:.55rem 1rem;margin:.8rem .5rem 0 0;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;text-decoration:none;cursor:pointer}
button.secondary,.button.secondary{background:transparent;color:var(--accent)}
:focus-visible{outline:3px solid var(--accent);outline-offset:2px}code{overflow-wrap:anywhere}
.card{border:1px solid var(--line);border-radius:8px;padding:1rem;margin:0 0 1rem}img.logo{max-width:48px;max-height:48px;vertical-align:middle;margin-right:.5rem}
`;

/** A rendered page plus the headers it must be sent with (the CSP names its nonce). */
export interface RenderedPage {
  body: string;
  headers: Record<string, string>;
}

/**
 * The document around a page's content: doctype, `lang`, viewport, title, inline stylesheet.
 *
 * @param options.title shown in `<title>` and as the page's `<h1>`
 * @param options.content the page's markup (from `html`)
 * @returns the body and the security headers: a CSP with `default-src 'none'`, a nonce for the one
 *   stylesheet, `form-action 'self'` (plus `options.formActions`, e.g. an IdP origin) and
 *   `frame-ancestors 'none'`; `X-Frame-Options: DENY` and `Referrer-Policy: same-origin` (a consent
 *   or login page must not leak its query string) and `Cache-Control: no-store`.
 */
export function renderPage(options: { title: string; content: SafeHtml; formActions?: readonly string[]; imgSources?: readonly string[] }): RenderedPage {
  const nonce = randomBytes(16).toString('base64');
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>${escapeHtml(options.title)} · Gatehouse</title><style nonce="${nonce}">${STYLE}</style></head><body><main><h1>${escapeHtml(options.title)}</h1>${options.content.value}</main></body></html>`;
  const formAction = ["'self'", ...(options.formActions ?? [])].join(' ');
  const img = ["'self'", 'data:', ...(options.imgSources ?? [])].join(' ');
  return {
    body,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': `default-src 'none'; style-src 'nonce-${nonce}'; img-src ${img}; form-action ${formAction}; frame-ancestors 'none'; base-uri 'none'`,
      'x-frame-options': 'DENY',
      // Not `no-referrer`: with it browsers send `Origin: null` on the page's own form POSTs (Fetch
      // standard, "append a request Origin header"), which the Host/Origin hook rightly refuses.
      // `same-origin` still sends nothing to other origins.
      'referrer-policy': 'same-origin',
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
    },
  };
}
