import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostOriginRules, isProbePath, parseHost, type RequestHead } from './host-origin.js';

const rules = new HostOriginRules(true, ['localhost', '127.0.0.1', '[::1]', 'MCP.Example.com'], ['https://app.example.com', '*']);
const head = (method: string, url: string, headers: Record<string, string>, extraHosts: string[] = []): RequestHead => ({
  method,
  url,
  headers,
  rawHeaders: [...Object.entries(headers).flat(), ...extraHosts.flatMap((h) => ['Host', h])],
});

describe('Host/Origin rules', () => {
  it('parses Host strictly', () => {
    assert.deepEqual(parseHost('localhost:3000'), { hostname: 'localhost', port: 3000 });
    assert.deepEqual(parseHost('MCP.example.COM'), { hostname: 'mcp.example.com', port: undefined });
    assert.deepEqual(parseHost('[0:0:0:0:0:0:0:1]:8080'), { hostname: '[::1]', port: 8080 });
    assert.deepEqual(parseHost('gatehouse_svc'), { hostname: 'gatehouse_svc', port: undefined });
    assert.deepEqual(parseHost('localhost:'), { hostname: 'localhost', port: undefined });
    for (const bad of ['', 'a b', '[::1', '::1', '[nope]', 'evil@localhost', 'localhost/x', 'localhost?x', 'localhost:99999', 'localhost:1:2', 'local%68ost', 'héllo', 'a\tb']) {
      assert.equal(parseHost(bad), undefined, JSON.stringify(bad));
    }
  });

  it('accepts origins listed exactly, on an allowed host name (any port), or the request’s own', () => {
    assert.equal(rules.isAllowedOrigin('https://app.example.com'), true);
    assert.equal(rules.isAllowedOrigin('http://localhost:5173'), true);
    assert.equal(rules.isAllowedOrigin('http://[::1]:3000'), true);
    assert.equal(rules.isAllowedOrigin('https://mcp.example.com'), true, 'allowed hosts are compared in lower case');
    assert.equal(rules.isAllowedOrigin('http://box.lan:3000', 'box.lan:3000'), true, 'same origin as the request');
    for (const bad of ['https://evil.example', 'null', '*', 'https://app.example.com/', 'http://user@localhost', 'file://localhost', 'chrome-extension://abc', 'http://localhost.evil.example', 'http://box.lan:3001']) {
      assert.equal(rules.isAllowedOrigin(bad, 'box.lan:3000'), false, bad);
    }
  });

  it('orders its answers: malformed 400 first, probes exempt, then Host, Origin and Sec-Fetch-Site', () => {
    assert.equal(rules.check(head('GET', '/api/v1/servers', { host: 'localhost:3000' }, ['evil.example']))?.status, 400);
    assert.equal(rules.check(head('GET', '/healthz', { host: 'a b' }))?.status, 400, 'malformed is malformed on probes too');
    assert.equal(rules.check(head('GET', '/healthz', {})), undefined);
    assert.equal(rules.check(head('GET', '/readyz?full=1', { host: '10.0.0.7:3000', origin: 'https://evil.example' })), undefined);
    assert.equal(rules.check(head('GET', '/api/v1/me', {}))?.status, 400);
    assert.equal(rules.check(head('GET', '/api/v1/me', { host: 'evil.example' }))?.status, 403);
    assert.equal(rules.check(head('GET', '/api/v1/me', { host: 'localhost', origin: 'https://evil.example' }))?.status, 403);
    assert.equal(rules.check(head('POST', '/api/v1/servers', { host: 'localhost', 'sec-fetch-site': 'cross-site' }))?.status, 403);
    assert.equal(rules.check(head('GET', '/api/v1/servers', { host: 'localhost', 'sec-fetch-site': 'cross-site' })), undefined);
    assert.equal(rules.check(head('POST', '/api/v1/servers', { host: 'localhost', 'sec-fetch-site': 'cross-site', origin: 'https://app.example.com' })), undefined);
    assert.equal(rules.check(head('POST', '/api/v1/servers', { host: 'localhost' })), undefined, 'non-browser clients');
    assert.equal(rules.check(head('GET', 'http://evil.example/api/v1/me', { host: 'localhost' }))?.status, 403, 'absolute-form: its authority is the host');
    assert.equal(rules.check(head('GET', 'http://a b/api/v1/me', { host: 'localhost' }))?.status, 400);
    assert.equal(rules.check(head('GET', 'http://localhost:3000/api/v1/me', { host: 'evil.example' })), undefined);

    const loose = new HostOriginRules(false, ['localhost'], []);
    assert.equal(loose.check(head('GET', '/api/v1/me', { host: 'box.lan', origin: 'https://evil.example' })), undefined);
    assert.equal(loose.check(head('DELETE', '/api/v1/servers/x', { host: 'box.lan', origin: 'https://evil.example' }))?.status, 403);
    assert.equal(loose.check(head('DELETE', '/api/v1/servers/x', { host: 'box.lan', origin: 'http://box.lan' })), undefined);
    assert.equal(loose.problem('evil.example', 'https://evil.example'), undefined, '/mcp’s own check follows the setting');
  });

  it('keeps refused values short in messages', () => {
    const long = `${'a'.repeat(500)}.example`;
    const refusal = rules.check(head('GET', '/api/v1/me', { host: long }));
    assert.equal(refusal?.status, 403);
    assert.ok((refusal?.message.length ?? 0) < 200, refusal?.message);
  });

  it('answers the same for a Host seen before (the last parse is reused) as for a new one', () => {
    const fresh = new HostOriginRules(true, ['localhost'], []);
    for (const [host, status] of [['localhost:1', undefined], ['localhost:1', undefined], ['a b', 400], ['a b', 400], ['evil.example', 403], ['localhost:1', undefined], ['evil.example', 403]] as const) {
      assert.equal(fresh.check(head('POST', '/mcp', { host }))?.status, status, host);
    }
  });

  it('tells the probes by their path, whatever the query', () => {
    for (const url of ['/healthz', '/readyz', '/readyz?full=1', '/healthz?']) assert.equal(isProbePath(url), true, url);
    for (const url of ['/healthz/', '/mcp', '/api/v1/readyz', '/mcp?/healthz', '']) assert.equal(isProbePath(url), false, url);
  });
});
