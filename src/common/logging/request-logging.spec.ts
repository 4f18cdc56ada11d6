import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import type { FastifyRequest } from 'fastify';
import { loadConfig } from '../../config/load-config.js';
import { createRootLogger } from './logger.js';
import { REDACTED, redactDeep } from './redact.js';
import { AccessLine, requestFields } from './request-logging.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

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
