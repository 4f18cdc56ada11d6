import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../config/load-config.js';
import { isLoopbackHost, openAccessVerdict } from './open-access.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';
function verdictFor(env: Record<string, string>) {
  const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, ...env }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return openAccessVerdict(result.config).kind;
}

describe('open access (strategy none) and the listening address', () => {
  it('tells loopback addresses from network ones', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1']) {
      assert.equal(isLoopbackHost(host), true, host);
    }
    for (const host of ['0.0.0.0', '::', '[::]', '192.168.1.20', '10.0.0.1', 'fe80::1', '::ffff:10.0.0.1', 'gatehouse.example.com', 'localhost.example.com', '128.0.0.1']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });

  it('refuses none alone off loopback unless allowed; warns on loopback; leaves real authentication alone', () => {
    assert.equal(verdictFor({}), 'warn', 'the default HOST is 127.0.0.1');
    assert.equal(verdictFor({ HOST: '0.0.0.0' }), 'refuse');
    assert.equal(verdictFor({ HOST: '192.168.1.20' }), 'refuse');
    assert.equal(verdictFor({ HOST: '0.0.0.0', MCP_AUTH_ALLOW_NONE_ON_NETWORK: 'true' }), 'warn');
    assert.equal(verdictFor({ HOST: '0.0.0.0', MCP_AUTH_STRATEGY: 'api_key' }), 'authenticated');
    // Beside another strategy, `none` only admits an unauthenticated principal that never reaches the admin API.
    assert.equal(verdictFor({ HOST: '0.0.0.0', MCP_AUTH_STRATEGY: 'none,api_key' }), 'authenticated');
  });
});
