import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { loadConfig } from '../../config/load-config.js';
import { createRootLogger } from './logger.js';
import { REDACTED, redactDeep } from './redact.js';
import { pino, type Logger } from 'pino';
import { AccessLine, accessLineWriter, requestFields, type AccessLevel, type Messages } from './request-logging.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

/** A logger as production makes it (createRootLogger), writing into `out`. */
async function productionLogger(out: string[], level = 'info'): Promise<Logger> {
  const result = loadConfig({ NODE_ENV: 'production', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: 'k'.repeat(32), LOG_LEVEL: level }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return createRootLogger(result.config, { write: (line: string) => void out.push(line) });
}

/** Strings an access line may carry, the awkward ones included. */
const STRINGS = ['', 'a', 'api_key:k1', 'user:ü', '"quoted"', 'back\\slash', 'tab\there', 'nl\n', '\u0000\u001f', '\u007f\u2028\u2029', '€𝄞', '\ud800', 'x\udc00y', 'z'.repeat(150), `${'q"'.repeat(60)}\u0001`];

const request = {
  id: 'rid-1',
  method: 'POST',
  url: '/mcp/echo?token=s3cret&x=1',
  headers: {
    'user-agent': 'ua',
    'content-type': 'application/json',
    'content-length': '12',
    'mcp-protocol-version': '2025-06-18',
    'mcp-method': 'tools/call',
    accept: 'application/json, text/event-stream',
    authorization: 'Bearer s3cret',
    'x-api-key': 's3cret',
    cookie: 'gh=s3cret',
  },
  raw: { socket: { remoteAddress: '127.0.0.1' } },
} as unknown as FastifyRequest;

describe('access log lines', () => {
  it('hold no field redaction would change: only the logged headers, the query credentials masked', () => {
    const line = new AccessLine('rid-1', requestFields(request), { statusCode: 200 }, 3, 'api_key:k1');
    const plain = JSON.parse(JSON.stringify(line)) as Record<string, unknown>;
    assert.deepEqual(redactDeep(plain), plain);
    assert.equal(JSON.stringify(line).includes('s3cret'), false);
    assert.equal(line.req.url, `/mcp/echo?token=${encodeURIComponent(REDACTED)}&x=1`);
    assert.deepEqual(Object.keys(line.req.headers), ['user-agent', 'content-type', 'content-length', 'mcp-protocol-version', 'mcp-method', 'accept']);
  });

  it('leave out the logged headers a request lacks', () => {
    const bare = { ...request, headers: { accept: '*/*', cookie: 'gh=s3cret' } } as unknown as FastifyRequest;
    assert.equal(JSON.stringify(requestFields(bare).headers), '{"accept":"*/*"}');
  });

  it('are written exactly as the same fields in a plain object would be', async () => {
    const result = loadConfig({ NODE_ENV: 'production', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'api_key', MCP_API_KEYS: 'k'.repeat(32), LOG_LEVEL: 'info' }, null);
    if (!result.ok) throw new Error(result.errors.join('\n'));
    const out: string[] = [];
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (out.push(chunk.toString()), done()) });
    const logger = await createRootLogger(result.config, sink);
    const line = new AccessLine('rid-1', requestFields(request), undefined, 3, undefined);
    logger.info(line, 'request completed');
    logger.info({ ...line }, 'request completed');
    await new Promise((resolve) => setImmediate(resolve));
    const [a, b] = out.map((text) => ({ ...(JSON.parse(text) as Record<string, unknown>), time: 0 }));
    assert.deepEqual(a, b);
    assert.deepEqual(Object.keys(a), ['level', 'time', 'service', 'requestId', 'req', 'responseTime', 'msg']);
  });
});

describe('access lines written without pino\'s per-field serialization', () => {
  it('are byte for byte what pino writes for the same record, level and message', async () => {
    const realNow = Date.now;
    Date.now = () => Date.UTC(2026, 10, 30, 8, 0, 0, 123);
    try {
      const mine: string[] = [];
      const theirs: string[] = [];
      const write = accessLineWriter(await productionLogger(mine));
      const logger = await productionLogger(theirs);
      const cases: [AccessLevel, Messages][] = [['info', 'request completed'], ['warn', 'request completed'], ['error', 'request errored'], ['info', 'request aborted']];
      let n = 0;
      for (const text of STRINGS) {
        for (const [level, msg] of cases) {
          n++;
          const req = { ...request, id: `rid-${n}`, url: `/mcp/${text}?token=${text}`, headers: { ...request.headers, 'user-agent': text, accept: n % 2 ? undefined : text } } as unknown as FastifyRequest;
          const record = new AccessLine(
            n % 3 ? `rid-${n}` : text,
            requestFields(req),
            n % 4 ? { statusCode: 200 + n } : undefined,
            n % 5 ? n : n % 2 ? undefined : Number.NaN,
            n % 6 ? text : undefined,
          );
          write(record, level, msg);
          logger[level](record, msg);
        }
      }
      assert.equal(mine.length, n);
      assert.deepEqual(mine, theirs);
    } finally {
      Date.now = realNow;
    }
  });

  it('leave it to pino when the logger is not a plain one (a mixin), and respect the level', async () => {
    const out: string[] = [];
    const logger = pino({ mixin: () => ({ extra: 1 }), timestamp: false }, { write: (line: string) => void out.push(line) });
    accessLineWriter(logger)(new AccessLine('rid-1', requestFields(request), { statusCode: 200 }, 1, undefined), 'info', 'request completed');
    assert.equal((JSON.parse(out[0]) as { extra: number }).extra, 1);
    const quiet: string[] = [];
    const write = accessLineWriter(await productionLogger(quiet, 'warn'));
    write(new AccessLine('rid-2', requestFields(request), { statusCode: 200 }, 1, undefined), 'info', 'request completed');
    write(new AccessLine('rid-3', requestFields(request), { statusCode: 404 }, 1, undefined), 'warn', 'request completed');
    assert.equal(quiet.length, 1);
    assert.equal((JSON.parse(quiet[0]) as { requestId: string }).requestId, 'rid-3');
  });
});
