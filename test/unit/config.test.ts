import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.js';

const load = (env: Record<string, string>) => loadConfig(env, null);

function errorsOf(env: Record<string, string>): string[] {
  const result = load(env);
  assert.equal(result.ok, false, 'expected the configuration to be rejected');
  return result.ok ? [] : result.errors;
}

describe('configuration', () => {
  it('applies documented defaults when nothing is set', () => {
    const result = load({});
    assert.ok(result.ok);
    const { config } = result;
    assert.equal(config.http.port, 3000);
    assert.equal(config.http.host, '127.0.0.1');
    assert.equal(config.http.publicUrl, 'http://localhost:3000');
    assert.equal(config.http.maxRequestBytes, 10 * 1024 * 1024);
    assert.equal(config.http.requestTimeoutMs, 300_000);
    assert.equal(config.database.url, undefined);
    assert.equal(config.database.migrate, true);
    assert.equal(config.database.embedded.dir, './.data/postgres');
    assert.equal(config.log.pretty, true, 'development logs are pretty by default');
  });

  it('names the variable, what is accepted and what was given', () => {
    assert.deepEqual(errorsOf({ PORT: 'abc' }), ['PORT: expected an integer 1-65535, got "abc"']);
    assert.deepEqual(errorsOf({ PORT: '70000' }), ['PORT: expected an integer 1-65535, got "70000"']);
  });

  it('reports every bad variable, one line each', () => {
    const errors = errorsOf({
      PORT: '3.5',
      LOG_LEVEL: 'loud',
      HTTP_ENABLE_CORS: 'maybe',
      HTTP_MAX_REQUEST_SIZE: 'ten megabytes',
      DATABASE_URL: 'mysql://localhost/db',
      PUBLIC_URL: 'not a url',
    });
    assert.deepEqual(errors.sort(), [
      'DATABASE_URL: expected a postgres or postgresql URL, got "mysql://localhost/db"',
      'HTTP_ENABLE_CORS: expected true or false, got "maybe"',
      'HTTP_MAX_REQUEST_SIZE: expected a size such as 512kb, 10mb or a byte count (1024-1073741824 bytes), got "ten megabytes"',
      'LOG_LEVEL: expected one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'PORT: expected an integer 1-65535, got "3.5"',
      'PUBLIC_URL: expected a http or https URL, got "not a url"',
    ]);
  });

  it('parses sizes, booleans, lists and URLs in the seed formats', () => {
    const result = load({
      HTTP_MAX_REQUEST_SIZE: '4mb',
      HTTP_ENABLE_CORS: 'TRUE',
      HTTP_CORS_ORIGINS: 'https://a.example.com, https://b.example.com',
      DB_MIGRATE: '0',
      PUBLIC_URL: 'https://mcp.example.com/',
      DATABASE_URL: 'postgres://u:p@db:5432/gatehouse',
      NODE_ENV: 'production',
      HTTP_TRUST_PROXY: '10.0.0.0/8,127.0.0.1',
    });
    assert.ok(result.ok);
    const { config } = result;
    assert.equal(config.http.maxRequestBytes, 4 * 1024 * 1024);
    assert.equal(config.http.cors.enabled, true);
    assert.deepEqual(config.http.cors.origins, ['https://a.example.com', 'https://b.example.com']);
    assert.equal(config.database.migrate, false);
    assert.equal(config.http.publicUrl, 'https://mcp.example.com', 'no trailing slash');
    assert.equal(config.database.url, 'postgres://u:p@db:5432/gatehouse');
    assert.equal(config.log.pretty, false, 'production logs are JSON');
    assert.deepEqual(config.http.trustProxy, ['10.0.0.0/8', '127.0.0.1']);
  });

  it('treats an empty value as unset', () => {
    const result = load({ PORT: '', LOG_LEVEL: '  ' });
    assert.ok(result.ok);
    assert.equal(result.config.http.port, 3000);
    assert.equal(result.config.log.level, 'info');
  });

  it('stops the process before it listens, exit code not 0, one line per bad variable', () => {
    const run = spawnSync(process.execPath, ['dist/main.js'], {
      env: { PATH: process.env.PATH, PORT: 'abc', LOG_LEVEL: 'loud', GATEHOUSE_ENV_FILE: '/nonexistent' },
      encoding: 'utf8',
      timeout: 20_000,
    });
    assert.notEqual(run.status, 0);
    assert.match(run.stderr, /^ {2}PORT: expected an integer 1-65535, got "abc"$/m);
    assert.match(run.stderr, /^ {2}LOG_LEVEL: expected one of .*, got "loud"$/m);
    assert.doesNotMatch(run.stdout + run.stderr, /listening/i);
  });
});
