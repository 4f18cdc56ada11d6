import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { isPrivateAddress, SafeFetch, SafeFetchError } from './safe-fetch.js';

describe('SafeFetch', () => {
  let server: Server;
  let port = 0;
  before(async () => {
    server = createServer((req, res) => {
      if (req.url === '/redirect') return void res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
      if (req.url === '/big') return void res.writeHead(200, { 'content-type': 'application/json' }).end(`"${'x'.repeat(10_000)}"`);
      if (req.url === '/chunked-big') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('"' + 'x'.repeat(3000));
        return void res.end('x'.repeat(3000) + '"');
      }
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' }).end('{"ok":true}');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as { port: number }).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  const local = (extra: Partial<ConstructorParameters<typeof SafeFetch>[0]> = {}) =>
    new SafeFetch({ allowPrivate: true, allowHttp: true, maxBytes: 5120, timeoutMs: 2000, ...extra });

  it('classifies private, loopback, link-local, mapped and metadata addresses', () => {
    for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '100.64.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '0.0.0.0']) {
      assert.equal(isPrivateAddress(a), true, a);
    }
    for (const a of ['8.8.8.8', '2606:4700:4700::1111', '1.1.1.1']) assert.equal(isPrivateAddress(a), false, a);
  });

  it('refuses http, private addresses (literal and resolved), redirects and oversized bodies', async () => {
    await assert.rejects(new SafeFetch({ allowPrivate: false, maxBytes: 5120, timeoutMs: 2000 }).get(`http://127.0.0.1:${port}/`), /only https/);
    await assert.rejects(new SafeFetch({ allowPrivate: false, allowHttp: true, maxBytes: 5120, timeoutMs: 2000 }).get(`http://127.0.0.1:${port}/`), /private or reserved/);
    const resolvesPrivate = new SafeFetch({ allowPrivate: false, allowHttp: true, maxBytes: 5120, timeoutMs: 2000, lookup: (_h, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]) });
    await assert.rejects(resolvesPrivate.get(`http://metadata.example:${port}/`), (e: unknown) => e instanceof SafeFetchError && /private or reserved/.test(e.message));
    const f = local();
    await assert.rejects(f.get(`http://127.0.0.1:${port}/redirect`), /redirect \(302\)/);
    await assert.rejects(f.get(`http://127.0.0.1:${port}/big`), /larger than 5120 bytes/);
    await assert.rejects(f.get(`http://127.0.0.1:${port}/chunked-big`), /larger than 5120 bytes/);
    const ok = await f.get(`http://127.0.0.1:${port}/doc`);
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body.toString()), { ok: true });
    await f.close();
  });

  it('fetches a host name that resolves when the connection asks for every address (Node happy-eyeballs: `localhost`)', async () => {
    const f = local();
    const ok = await f.fetch(`http://localhost:${port}/doc`, { method: 'POST', body: 'x' });
    assert.equal(ok.status, 200);
    await f.close();
  });
});
