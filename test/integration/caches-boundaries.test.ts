import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

/** Which module owns each table: only that module's code may read or write it. */
const OWNER: Record<string, string> = {
  users: 'users',
  api_keys: 'api-keys',
  secrets: 'secrets',
  mcp_sessions: 'sessions',
  upstream_servers: 'upstreams',
  policies: 'policies',
  browser_sessions: 'login',
  login_flows: 'login',
  login_identities: 'login',
  local_credentials: 'login',
  login_throttle: 'login',
  input_required_relay: 'mcp',
};

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.spec.ts') ? [join(dir, e.name)] : [],
  );
}

/*
 * Issue 9, fault 5: modules reached into each other's tables (UsersService ran SQL on api_keys,
 * ApiKeysService joined users), so a cache in one module held another's rows without hearing of
 * their changes. A module now asks the owning module's exported service. This test reads the
 * sources (the tests run from the repository root) and fails on any raw SQL naming another
 * module's table, and on any non-entity file importing another module's entity as a value (a
 * repository on its table). Entity files may reference other entities: that is a foreign key, not a read.
 */
describe('module boundaries', () => {
  const modules = readdirSync('src', { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => e.name);

  it('no module reads or writes another module’s tables', () => {
    const violations: string[] = [];
    for (const module of modules) {
      for (const file of sources(join('src', module))) {
        const text = readFileSync(file, 'utf8');
        for (const m of text.matchAll(/\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)\b/g)) {
          const owner = OWNER[m[1]];
          if (owner && owner !== module) violations.push(`${file}: SQL on ${m[1]} (owned by ${owner})`);
        }
        if (file.endsWith('.entity.ts')) continue;
        // A type-only import is a shape another module's service returns, not a repository.
        for (const m of text.matchAll(/^import (?!type )[^;]*from '\.\.\/([a-z-]+)\/[a-z-]+\.entity\.js'/gm)) {
          if (m[1] !== module) violations.push(`${file}: uses an entity of ${m[1]}`);
        }
      }
    }
    assert.deepEqual(violations, []);
  });
});
