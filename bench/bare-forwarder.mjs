// The forwarding limit: a bare Node proxy (node:http + an undici Pool, body piped, nothing
// parsed, no auth, no logging). UPSTREAM=http://host:port, PORT. What Gatehouse is measured against.
import { createServer } from 'node:http';
import { Pool } from 'undici';

const upstream = new URL(process.env.UPSTREAM);
const pool = new Pool(upstream.origin, { connections: 64, pipelining: 1 });
// Hop-by-hop headers (RFC 9110 §7.6.1) and Host stay behind; Content-Length is end to end, so
// bodies go through unchunked, as they came.
const HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'host']);
createServer((req, res) => {
  const headers = {};
  for (const [k, v] of Object.entries(req.headers)) if (!HOP.has(k)) headers[k] = v;
  pool
    .request({ path: upstream.pathname, method: req.method, headers, body: req })
    .then(({ statusCode, headers: h, body }) => {
      for (const k of HOP) delete h[k];
      res.writeHead(statusCode, h);
      body.pipe(res);
    })
    .catch(() => res.writeHead(502).end());
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
