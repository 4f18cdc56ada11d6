import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildCatalog, toolAllowed, type CatalogSource } from './catalog.js';

const tool = (name: string) => ({ name, inputSchema: { type: 'object' as const, properties: { q: { type: 'string' } } }, description: `does ${name}` });
const source = (server: string, tools: string[], extra: Partial<CatalogSource> = {}): CatalogSource => ({
  server,
  tools: tools.map(tool),
  prompts: [],
  resources: [],
  resourceTemplates: [],
  toolFilter: {},
  ...extra,
});

describe('toolAllowed', () => {
  it('allows everything with no filter', () => assert.equal(toolAllowed('x', {}), true));
  it('applies allow globs as a whitelist', () => {
    assert.equal(toolAllowed('get_issue', { allow: ['get_*'] }), true);
    assert.equal(toolAllowed('delete_repo', { allow: ['get_*'] }), false);
  });
  it('lets deny win over allow', () => assert.equal(toolAllowed('get_secret', { allow: ['get_*'], deny: ['*secret*'] }), false));
  it('matches ? as one character and the whole name only', () => {
    assert.equal(toolAllowed('a1', { allow: ['a?'] }), true);
    assert.equal(toolAllowed('a12', { allow: ['a?'] }), false);
    assert.equal(toolAllowed('xget_y', { allow: ['get_*'] }), false);
    assert.equal(toolAllowed('get.x', { allow: ['get.x'] }), true);
    assert.equal(toolAllowed('getXx', { allow: ['get.x'] }), false, 'a dot is literal');
  });
});

describe('buildCatalog', () => {
  it('namespaces tools as <server>__<name>, keeps schemas, maps back', () => {
    const c = buildCatalog([source('github', ['create_issue']), source('jira', ['create_issue'])], 'aggregate');
    assert.deepEqual(c.tools.map((t) => t.name), ['github__create_issue', 'jira__create_issue']);
    assert.deepEqual(c.tools[0].inputSchema, tool('x').inputSchema);
    assert.equal(c.tools[0].description, 'does create_issue');
    assert.deepEqual(c.resolveTool('jira__create_issue'), { server: 'jira', name: 'create_issue' });
    assert.equal(c.resolveTool('create_issue'), undefined, 'a name without a namespace resolves to nothing');
    assert.equal(c.resolveTool('gitlab__create_issue'), undefined);
  });

  it('keeps upstream names on a single-server endpoint', () => {
    const c = buildCatalog([source('github', ['create_issue'])], 'single');
    assert.deepEqual(c.tools.map((t) => t.name), ['create_issue']);
    assert.deepEqual(c.resolveTool('create_issue'), { server: 'github', name: 'create_issue' });
  });

  it('applies each server’s filter to its own names', () => {
    const c = buildCatalog([source('a', ['read', 'write'], { toolFilter: { deny: ['write'] } }), source('b', ['read', 'write'])], 'aggregate');
    assert.deepEqual(c.tools.map((t) => t.name), ['a__read', 'b__read', 'b__write']);
    assert.equal(c.resolveTool('a__write'), undefined, 'a filtered tool cannot be called either');
  });

  it('makes resource URIs unique per server and maps them back unchanged', () => {
    const c = buildCatalog(
      [
        source('a', [], { resources: [{ uri: 'file:///x.txt', name: 'x' }], resourceTemplates: [{ uriTemplate: 'demo://r/{id}', name: 't' }] }),
        source('b', [], { resources: [{ uri: 'file:///x.txt', name: 'x' }] }),
      ],
      'aggregate',
    );
    assert.deepEqual(c.resources.map((r) => r.uri), ['gatehouse://a/file:///x.txt', 'gatehouse://b/file:///x.txt']);
    assert.equal(c.resourceTemplates[0].uriTemplate, 'gatehouse://a/demo://r/{id}');
    assert.deepEqual(c.resolveResource('gatehouse://b/file:///x.txt'), { server: 'b', name: 'file:///x.txt' });
    assert.deepEqual(c.resolveResource('gatehouse://a/demo://r/7'), { server: 'a', name: 'demo://r/7' });
    assert.equal(c.resolveResource('gatehouse://zzz/file:///x.txt'), undefined);
    assert.equal(c.resolveResource('file:///x.txt'), undefined);
  });

  it('namespaces prompts', () => {
    const c = buildCatalog([source('a', [], { prompts: [{ name: 'summarize' }] })], 'aggregate');
    assert.deepEqual(c.prompts.map((p) => p.name), ['a__summarize']);
    assert.deepEqual(c.resolvePrompt('a__summarize'), { server: 'a', name: 'summarize' });
  });
});
