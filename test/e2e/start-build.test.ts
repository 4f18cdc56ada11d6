import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, describe, it } from 'node:test';

const SCRIPT = resolve('scripts/build-if-changed.mjs');

describe('npm start rebuilds only when the sources changed', () => {
  // A project in miniature: the real script, a build that records each run and writes dist/main.js.
  const root = mkdtempSync(join(tmpdir(), 'gatehouse-start-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const write = (path: string, content: string) => {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  };
  write('package.json', JSON.stringify({ name: 'mini', private: true, scripts: { build: 'node build.mjs' } }));
  write('build.mjs', "import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';\nappendFileSync('builds.log', 'built\\n');\nmkdirSync('dist', { recursive: true });\nwriteFileSync('dist/main.js', '');\n");
  write('src/main.ts', 'export const a = 1;\n');
  write('src/main.spec.ts', 'test\n');
  write('migrations/1-init.ts', 'export {};\n');
  write('tsconfig.json', '{}\n');
  write('package-lock.json', '{}\n');

  /** Runs the prestart script as npm would (from the root, npm on PATH); returns its output and the build count. */
  const prestart = () => {
    const run = spawnSync(process.execPath, [SCRIPT], { cwd: root, encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.equal(run.status, 0, run.stderr);
    let builds = 0;
    try {
      builds = readFileSync(join(root, 'builds.log'), 'utf8').split('\n').filter(Boolean).length;
    } catch {
      // no build yet
    }
    return { out: run.stdout, builds };
  };

  it('is what `npm start` runs first', () => {
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> };
    assert.equal(pkg.scripts.prestart, 'node scripts/build-if-changed.mjs');
  });

  it('builds a clean clone, then skips silently, rebuilds on a change with one line, ignores mere timestamps and specs', () => {
    const first = prestart();
    assert.equal(first.builds, 1);
    assert.match(first.out, /^gatehouse: no build yet; building \(npm run build\)…\n$/);

    const again = prestart();
    assert.equal(again.builds, 1, 'unchanged sources: no rebuild');
    assert.equal(again.out, '', 'and nothing printed');

    const later = new Date(Date.now() + 60_000);
    utimesSync(join(root, 'src/main.ts'), later, later);
    write('src/main.spec.ts', 'changed spec\n');
    assert.equal(prestart().builds, 1, 'a touched file or a changed unit spec is no reason to rebuild');

    for (const [path, content] of [
      ['src/main.ts', 'export const a = 2;\n'],
      ['migrations/2-more.ts', 'export {};\n'],
      ['tsconfig.json', '{ "compilerOptions": {} }\n'],
      ['package-lock.json', '{ "lockfileVersion": 3 }\n'],
    ]) {
      write(path, content);
      const changed = prestart();
      assert.match(changed.out, /^gatehouse: sources changed since the last build; rebuilding \(npm run build\)…\n$/, path);
      assert.equal(prestart().out, '', `${path}: one rebuild, then quiet`);
    }
    assert.equal(prestart().builds, 5);

    rmSync(join(root, 'dist'), { recursive: true });
    assert.equal(prestart().builds, 6, 'no dist/ (e.g. after a clean): build');
  });
});
