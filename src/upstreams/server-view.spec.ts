import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { credentialsInArgs, maskArgs, maskUrl, unmaskArgs, unmaskUrl } from './server-view.js';

const R = '[REDACTED]';

describe('admin view masking beyond key names', () => {
  it('masks URL userinfo and credential-like query values, keeping the rest as written', () => {
    assert.equal(maskUrl('https://ghp_abc123@example.com/mcp'), `https://${R}@example.com/mcp`);
    assert.equal(maskUrl('https://ada:hunter2@example.com:8443/x?page=2'), `https://${R}@example.com:8443/x?page=2`);
    assert.equal(maskUrl('https://h/mcp?api_key=k1&page=2&token=t1&sig=s1&apiKey=k2#frag'), `https://h/mcp?api_key=${R}&page=2&token=${R}&sig=${R}&apiKey=${R}#frag`);
    assert.equal(maskUrl('https://h/mcp?access%5Ftoken=a'), `https://h/mcp?access%5Ftoken=${R}`);
    assert.equal(maskUrl('http://127.0.0.1:3000/mcp'), 'http://127.0.0.1:3000/mcp');
  });

  it('masks args after credential-like flags, --flag=VALUE, NAME=VALUE, header arguments and URLs', () => {
    assert.deepEqual(
      maskArgs(['-y', 'srv', '--token', 't1', '--api-key=k1', '--password', 'p1', '--client-secret', 's1', '-e', 'GITHUB_TOKEN=g1', '--header', 'Authorization: Bearer b1', 'https://u:p@h/x?key=q', '--port', '3000', '--auth-token', '--verbose']),
      ['-y', 'srv', '--token', R, `--api-key=${R}`, '--password', R, '--client-secret', R, '-e', `GITHUB_TOKEN=${R}`, '--header', `Authorization: ${R}`, `https://${R}@h/x?key=${R}`, '--port', '3000', '--auth-token', '--verbose'],
    );
  });

  it('names the credentials it hides, for masking them elsewhere', () => {
    assert.deepEqual(credentialsInArgs(['--token', 't1', '--api-key=k1', 'Authorization: Bearer b1', '--port', '3000']), ['t1', 'k1', 'Bearer b1']);
  });

  it('restores masked values a PATCH sends back, and takes new ones', () => {
    const stored = ['srv', '--token', 't1', '--api-key=k1'];
    assert.deepEqual(unmaskArgs(maskArgs(stored), stored), stored);
    assert.deepEqual(unmaskArgs(['--debug', ...maskArgs(stored)], stored), ['--debug', ...stored], 'found by the preceding flag when positions moved');
    assert.deepEqual(unmaskArgs(['srv', '--token', 't2'], stored), ['srv', '--token', 't2']);
    const url = 'https://ada:hunter2@h/x?token=t';
    assert.equal(unmaskUrl(maskUrl(url), url), url);
    assert.equal(unmaskUrl('https://h/other', url), 'https://h/other');
  });
});
