// `npm start`'s prestart: runs `npm run build` only when the build inputs changed since the last
// build it made, and says so in one line. Inputs: src/ (minus unit specs, which the build
// leaves out), migrations/, tsconfig*.json and package-lock.json (a dependency change can
// change types). Their contents — not modification times, which a checkout or copy changes —
// are hashed into dist/.build-stamp; no stamp or no dist/main.js (a clean clone, or after
// `npm test`, which rebuilds dist/ its own way) means build.
//
// Run from the project root (npm does). Exit code: the build's when it fails, else 0.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const STAMP = join('dist', '.build-stamp');

/** Every input file, relative to the root, in a stable order. */
function inputs() {
  const found = [];
  const walk = (dir) => {
    if (!existsSync(dir)) return;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && !entry.name.endsWith('.spec.ts')) found.push(path);
    }
  };
  walk('src');
  walk('migrations');
  for (const name of readdirSync('.')) if (/^tsconfig.*\.json$/.test(name) || name === 'package-lock.json') found.push(name);
  return found.sort();
}

/** sha256 over each input's path and content. */
function fingerprint() {
  const hash = createHash('sha256');
  for (const file of inputs()) hash.update(file).update('\0').update(readFileSync(file)).update('\0');
  return hash.digest('hex');
}

const current = fingerprint();
const previous = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : undefined;
if (previous === current && existsSync(join('dist', 'main.js'))) process.exit(0);

process.stdout.write(
  previous === undefined || !existsSync(join('dist', 'main.js'))
    ? 'gatehouse: no build yet; building (npm run build)…\n'
    : 'gatehouse: sources changed since the last build; rebuilding (npm run build)…\n',
);
// Inside an npm script npm says where it is; run that same npm.
const npm = process.env.npm_execpath;
const result = npm
  ? spawnSync(process.execPath, [npm, 'run', '-s', 'build'], { stdio: 'inherit' })
  : spawnSync('npm', ['run', '-s', 'build'], { stdio: 'inherit', shell: process.platform === 'win32' });
if (result.status !== 0) process.exit(result.status ?? 1);
mkdirSync('dist', { recursive: true });
writeFileSync(STAMP, `${current}\n`);
