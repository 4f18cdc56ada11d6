import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { envSchema } from '../../src/config/config.schema.js';

interface ComposeService {
  image?: string;
  build?: unknown;
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition?: string }>;
  healthcheck?: { test?: string[] | string };
  volumes?: string[];
  ports?: string[];
}

describe('delivery files', () => {
  it('docker-compose.yml wires Gatehouse to a healthy PostgreSQL with a volume', () => {
    const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, ComposeService>; volumes: Record<string, unknown> };
    const { postgres, gatehouse } = compose.services;
    assert.ok(postgres && gatehouse, 'both services exist');
    assert.match(postgres.image ?? '', /^postgres:/);
    assert.match(JSON.stringify(postgres.healthcheck?.test), /pg_isready/);
    const volume = postgres.volumes?.find((v) => v.endsWith(':/var/lib/postgresql/data'));
    assert.ok(volume, 'PostgreSQL data lives on a volume');
    assert.ok(volume.split(':')[0] in compose.volumes, 'the volume is declared');
    assert.ok(gatehouse.build, 'Gatehouse is built from this repository');
    assert.equal(gatehouse.depends_on?.postgres?.condition, 'service_healthy', 'Gatehouse waits for a healthy database');
    const url = new URL(gatehouse.environment?.DATABASE_URL?.replace(/\$\{[^}]+\}/g, 'x') ?? '');
    assert.equal(url.hostname, 'postgres', 'DATABASE_URL points at the compose service');
    assert.equal(url.pathname, `/${(postgres as { environment: Record<string, string> }).environment.POSTGRES_DB}`);
    assert.ok(gatehouse.ports?.some((p) => p.endsWith(':3000')));
    // The image runs with NODE_ENV=production, which refuses to boot without a key ring.
    assert.match(gatehouse.environment?.GATEHOUSE_ENCRYPTION_KEYS ?? '', /^\$\{GATEHOUSE_ENCRYPTION_KEYS:\?/, 'the key ring is required from the operator');
  });

  it('Dockerfile is multi-stage, production-only, non-root, with a HEALTHCHECK', () => {
    const dockerfile = readFileSync('Dockerfile', 'utf8');
    const stages = dockerfile.match(/^FROM /gm) ?? [];
    assert.ok(stages.length >= 2, 'multi-stage');
    assert.match(dockerfile, /npm prune --omit=dev/);
    const runtime = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    assert.match(runtime, /^USER (?!root)\w+/m, 'the runtime stage switches to a non-root user');
    assert.match(runtime, /^HEALTHCHECK .*\n?.*\/healthz/m);
    // AsyncLocalStorage on async context frames, not async hooks (docs/benchmarks.md, issue 12).
    assert.match(runtime, /^CMD \["node", "--experimental-async-context-frame", "dist\/main\.js"\]/m);
  });

  it('npm start runs Gatehouse with the same node flags as the image', () => {
    const scripts = (JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: Record<string, string> }).scripts;
    for (const name of ['start', 'start:prod']) assert.equal(scripts[name], 'node --experimental-async-context-frame dist/main.js', name);
  });

  it('.env.example and docs/configuration.md name every variable the schema reads', () => {
    const names = [...Object.keys(envSchema.shape), 'GATEHOUSE_ENV_FILE'];
    const example = readFileSync('.env.example', 'utf8');
    const docs = readFileSync('docs/configuration.md', 'utf8');
    for (const name of names) {
      assert.match(example, new RegExp(`^#? ?${name}=`, 'm'), `${name} is in .env.example`);
      assert.match(docs, new RegExp(`\\| \`${name}\` \\|`), `${name} has a row in docs/configuration.md`);
    }
  });
});
