import assert from 'node:assert/strict';
import type { PinoLogger } from 'nestjs-pino';
import { UpstreamCatalog } from './upstream-catalog.service.js';
import { describe, it } from 'node:test';
import { buildCatalog, toolAllowed, type CatalogSource } from './catalog.js';
import { NameWarningLog, nameWarnings } from './tool-names.js';

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

describe('exposed names meet the MCP tool-name rule (spec 2025-11-25, server/tools, Tool Names)', () => {
  const VALID = /^[A-Za-z0-9_.-]{1,128}$/;
  const long70 = `t${'x'.repeat(69)}`;
  const odd = ['files/read', 'search docs', 'db:query', 'naïve', long70, 'plain_ok', 'x'.repeat(200)];

  it('maps invalid upstream names to valid ones on both endpoints and resolves them back', () => {
    for (const mode of ['aggregate', 'single'] as const) {
      const c = buildCatalog([source('fs', odd, { prompts: [{ name: 'sum up' }] })], mode);
      assert.equal(c.tools.length, odd.length);
      for (const t of c.tools) assert.match(t.name, VALID, `${mode}: ${t.name}`);
      const back = c.tools.map((t) => c.resolveTool(t.name)?.name);
      assert.deepEqual(back, odd, `${mode}: every exposed name resolves to its original`);
      assert.match(c.prompts[0].name, VALID);
      assert.deepEqual(c.resolvePrompt(c.prompts[0].name), { server: 'fs', name: 'sum up' });
      assert.equal(c.resolveTool(mode === 'aggregate' ? 'fs__files/read' : 'files/read'), undefined, 'only the exposed name is a name');
    }
    const single = buildCatalog([source('fs', odd)], 'single');
    const shown = single.tools.map((t) => t.name);
    assert.equal(shown[5], 'plain_ok', 'a valid name is kept');
    assert.equal(shown[4], long70, 'a valid 70-character name is kept (only warned about)');
    assert.match(shown[0], /^files_read_[0-9a-f]{8}$/);
    assert.match(shown[1], /^search_docs_[0-9a-f]{8}$/);
    assert.match(shown[2], /^db_query_[0-9a-f]{8}$/);
    assert.match(shown[3], /^naive_[0-9a-f]{8}$/);
    assert.equal(shown[6].length, 128);
    assert.equal(single.tools[0].title, 'files/read', 'the original is shown as the title');
    assert.equal(single.tools[5].title, undefined);
  });

  it('is deterministic: same names whatever the order or the build', () => {
    const a = buildCatalog([source('fs', odd)], 'aggregate');
    const b = buildCatalog([source('fs', [...odd].reverse())], 'aggregate');
    const byOriginal = (c: typeof a) => Object.fromEntries(c.tools.map((t) => [c.resolveTool(t.name)!.name, t.name]));
    assert.deepEqual(byOriginal(a), byOriginal(b));
  });

  it('never collides: a valid name keeps its name, the renamed one moves on', () => {
    const first = buildCatalog([source('fs', ['files/read'])], 'single').tools[0].name;
    const c = buildCatalog([source('fs', ['files/read', first, 'files:read'])], 'single');
    const shown = c.tools.map((t) => t.name);
    assert.equal(new Set(shown).size, 3, shown.join(', '));
    assert.equal(shown[1], first, 'the upstream tool literally named like the stand-in keeps its name');
    assert.deepEqual(c.resolveTool(first), { server: 'fs', name: first });
    assert.deepEqual(c.resolveTool(shown[0]), { server: 'fs', name: 'files/read' });
  });

  it('fits namespaced names in 128 characters for the longest server name', () => {
    const server = `s${'e'.repeat(62)}`;
    const c = buildCatalog([source(server, ['y'.repeat(128), 'files/read'])], 'aggregate');
    for (const t of c.tools) {
      assert.match(t.name, VALID);
      assert.ok(t.name.startsWith(`${server}__`));
    }
    assert.deepEqual(c.resolveTool(c.tools[0].name), { server, name: 'y'.repeat(128) });
  });

  it('makes resource and template names valid too, URIs unchanged', () => {
    const c = buildCatalog([source('a', [], { resources: [{ uri: 'file:///x', name: 'Text Resource 1' }], resourceTemplates: [{ uriTemplate: 'demo://{id}', name: 'by id' }] })], 'single');
    assert.match(c.resources[0].name, VALID);
    assert.equal(c.resources[0].title, 'Text Resource 1');
    assert.equal(c.resources[0].uri, 'file:///x');
    assert.match(c.resourceTemplates[0].name, VALID);
  });

  it('nameWarnings reports renamed names and names over 64 characters', () => {
    const long70 = `t${'x'.repeat(69)}`;
    const c = buildCatalog([source('fs', ['ok', 'files/read', long70]), source('gh', ['x'])], 'single');
    const warnings = nameWarnings(c);
    assert.deepEqual(
      warnings.map((w) => [w.code, w.original]),
      [
        ['renamed', 'files/read'],
        ['long_name', long70],
      ],
    );
    assert.match(warnings[1].message, /is 70 characters; many MCP clients reject names over 64/);
    assert.deepEqual(nameWarnings(c, 'gh'), []);
  });

  it('NameWarningLog logs each tool/prompt warning once however often catalogs are rebuilt, resources not', () => {
    const logged: string[] = [];
    const log = new NameWarningLog((w) => logged.push(`${w.code}:${w.name}`));
    const long70 = `t${'x'.repeat(69)}`;
    log.check(buildCatalog([source('fs', [long70], { resources: [{ uri: 'file:///r', name: 'Project README' }] })], 'single'));
    log.check(buildCatalog([source('fs', [long70])], 'single'));
    log.check(buildCatalog([source('fs', [long70])], 'aggregate'));
    assert.deepEqual(logged, [`long_name:${long70}`, `long_name:fs__${long70}`]);
  });
});

describe('UpstreamCatalog', () => {
  it('asks for the sources only when it builds a catalog, not on every lookup', () => {
    const catalogs = new UpstreamCatalog({ setContext: () => undefined, warn: () => undefined } as unknown as PinoLogger);
    let asked = 0;
    const sources = () => {
      asked++;
      return [{ server: { name: 'gh', enabled: true, toolFilter: {}, inject: {} }, offerings: () => ({ tools: [{ name: 'x', inputSchema: { type: 'object' as const } }], prompts: [], resources: [], resourceTemplates: [] }) }] as never;
    };
    const first = catalogs.get('', sources);
    assert.equal(first?.resolveTool('gh__x')?.name, 'x');
    for (let i = 0; i < 3; i++) assert.equal(catalogs.get('', sources), first);
    assert.equal(asked, 1, 'cached lookups do not iterate the connections (was: a generator made per lookup)');
    catalogs.invalidate();
    assert.notEqual(catalogs.get('', sources), first);
    assert.equal(asked, 2);
  });
});
