import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { loadConfig } from '../config/load-config.js';
import { installOAuthServer } from './oauth-mount.js';
import type { OAuthProviderService } from './oauth-provider.service.js';
import type { SignedInUserResolver } from './signed-in-user.js';

const KEYS = 'test-1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=';

type Hook = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) => unknown;

/** The onRequest hook installOAuthServer adds (on a stand-in Fastify that only records hooks). */
function mountHook(): Hook {
  const result = loadConfig({ NODE_ENV: 'test', GATEHOUSE_ENCRYPTION_KEYS: KEYS, MCP_AUTH_STRATEGY: 'oauth2,api_key', GATEHOUSE_OAUTH_SERVER: 'true' }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  const hooks: Hook[] = [];
  const fastify = { addHook: (name: string, hook: Hook) => name === 'onRequest' && hooks.push(hook) } as unknown as FastifyInstance;
  installOAuthServer(fastify, { config: result.config, provider: {} as OAuthProviderService, resolver: {} as SignedInUserResolver, isMigrated: () => true });
  assert.equal(hooks.length, 1);
  return hooks[0];
}

describe('the OAuth server mount', () => {
  it('hands every other path on synchronously, without a promise', () => {
    const hook = mountHook();
    for (const url of ['/mcp', '/mcp/echo?x=1', '/api/v1/servers', '/healthz', '/oauthx', '/.well-known/oauth-protected-resource/mcp']) {
      let handedOn: unknown = 'not called';
      const returned = hook({ url } as FastifyRequest, {} as FastifyReply, (error) => (handedOn = error));
      assert.equal(returned, undefined, `${url}: no promise`);
      assert.equal(handedOn, undefined, `${url}: handed on at once, without an error`);
    }
  });
});
