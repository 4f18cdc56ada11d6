import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CallerListing } from './caller-listing.js';
import { buildCatalog } from './catalog.js';
import type { UpstreamConnection } from './upstream-connection.js';
import { UpstreamServerEntity } from './upstream-server.entity.js';

const server = (fields: Partial<UpstreamServerEntity>) =>
  Object.assign(new UpstreamServerEntity(), { name: 'acme', transport: 'streamable_http', url: 'https://acme.example/mcp', env: {}, headers: {}, inject: {}, toolFilter: { allow: ['read_*'] }, oauth: null, enabled: true }, fields);
const connectionOf = (row: UpstreamServerEntity) =>
  ({ server: row, offerings: () => ({ tools: [], prompts: [], resources: [], resourceTemplates: [] }) }) as unknown as UpstreamConnection;
/** The catalog `/mcp` (aggregate) or `/mcp/acme` (single) builds from `listing.source(…)`. */
const catalogOf = (listing: CallerListing, row: UpstreamServerEntity, refused: boolean, mode: 'aggregate' | 'single' = 'aggregate') => {
  const source = listing.source(connectionOf(row), refused, row);
  return buildCatalog([{ server: source.server.name, toolFilter: source.server.toolFilter, ...source.offerings() }], mode);
};

describe('CallerListing: what a refused per-user server is listed as', () => {
  const oauth = server({ oauth: { mode: 'user', scopes: ['read'] } });

  it('an oauth server nobody has listed: the connect tool alone (its tool filter does not hide it), resolving to a target marked as Gatehouse\'s own', () => {
    const catalog = catalogOf(new CallerListing(), oauth, true);
    assert.deepEqual(catalog.tools.map((t) => t.name), ['acme__connect']);
    assert.match(catalog.tools[0].description ?? '', /^Connect your acme account to use its tools/);
    assert.deepEqual(catalog.tools[0].inputSchema, { type: 'object', properties: {} });
    assert.deepEqual(catalog.resolveTool('acme__connect'), { server: 'acme', name: 'connect', connectTool: true });
    assert.deepEqual(catalogOf(new CallerListing(), oauth, true, 'single').tools.map((t) => t.name), ['connect']);
  });

  it('once a caller listed it, the listing replaces the connect tool; an upstream tool named connect is the upstream\'s', () => {
    const listing = new CallerListing();
    const connect = { name: 'connect', inputSchema: { type: 'object' as const } };
    assert.equal(listing.adopt('acme', true, { tools: [{ name: 'read_x', inputSchema: { type: 'object' } }, { name: 'read_y', inputSchema: { type: 'object' } }], prompts: [], resources: [], resourceTemplates: [] }), true);
    assert.deepEqual(catalogOf(listing, oauth, true).tools.map((t) => t.name), ['acme__read_x', 'acme__read_y']);
    listing.adopt('acme', true, { tools: [connect], prompts: [], resources: [], resourceTemplates: [] });
    assert.deepEqual(catalogOf(listing, server({ ...oauth, toolFilter: { allow: [], deny: [] } }), true).resolveTool('acme__connect'), { server: 'acme', name: 'connect' });
  });

  it('no connect tool for a server that is not refused, or that is per user through secrets rather than oauth', () => {
    assert.deepEqual(catalogOf(new CallerListing(), oauth, false).tools, []);
    assert.deepEqual(catalogOf(new CallerListing(), server({ headers: { Authorization: 'Bearer ${secret:TOKEN}' } }), true).tools, []);
  });
});
