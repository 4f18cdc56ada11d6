import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeHtml, html, rawHtml, renderPage } from './page.js';

describe('html pages', () => {
  it('escapes every interpolation unless it is already SafeHtml', () => {
    const name = `<img src=x onerror="alert('1')">&`;
    const out = html`<p title="${name}">${name}</p>${html`<b>${'<i>'}</b>`}`.value;
    assert.equal(out, '<p title="&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;">&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;</p><b>&lt;i&gt;</b>');
    assert.equal(html`${[html`<li>${'a<'}</li>`, 'b>']}${false}${null}${undefined}`.value, '<li>a&lt;</li>b&gt;');
    assert.equal(escapeHtml('`'), '&#96;');
    assert.equal(rawHtml('<br>').value, '<br>');
  });

  it('renders a document whose only style is allowed by a fresh nonce', () => {
    const a = renderPage({ title: 'Sign <in>', content: html`<p>x</p>` });
    const b = renderPage({ title: 'x', content: html`` });
    const nonce = /nonce-([^']+)'/.exec(a.headers['content-security-policy'])![1];
    assert.ok(a.body.includes(`<style nonce="${nonce}">`));
    assert.ok(a.body.includes('<title>Sign &lt;in&gt; · Gatehouse</title>'));
    assert.notEqual(nonce, /nonce-([^']+)'/.exec(b.headers['content-security-policy'])![1]);
    assert.match(a.headers['content-security-policy'], /default-src 'none'.*form-action 'self'.*frame-ancestors 'none'/);
    assert.equal(a.headers['cache-control'], 'no-store');
    assert.doesNotMatch(a.body, /<script|https?:\/\//);
  });
});
