import { existsSync, readFileSync } from 'node:fs';
import { parseEnv } from 'node:util';
import { envSchema, toAppConfig, type AppConfig } from './config.schema.js';

export type ConfigResult = { ok: true; config: AppConfig } | { ok: false; errors: string[] };

/**
 * Reads `.env` (or `GATEHOUSE_ENV_FILE`; `null` skips it) under the real environment (the
 * environment wins), then
 * parses everything once with {@link envSchema}. Returns one line per bad variable, each
 * naming the variable, what is accepted and what was given.
 */
export function loadConfig(
  env: NodeJS.ProcessEnv = process.env,
  envFile: string | null = env.GATEHOUSE_ENV_FILE ?? '.env',
): ConfigResult {
  const fromFile = envFile !== null && existsSync(envFile) ? parseEnv(readFileSync(envFile, 'utf8')) : {};
  const merged = { ...fromFile, ...env };
  const parsed = envSchema.safeParse(merged);
  if (!parsed.success) {
    const errors = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`);
    return { ok: false, errors };
  }
  return { ok: true, config: toAppConfig(parsed.data) };
}

/**
 * For entry points: the config, or print every problem to stderr and exit non-zero before
 * anything starts listening.
 */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const result = loadConfig(env);
  if (result.ok) return result.config;
  process.stderr.write(`Invalid configuration (${result.errors.length} problem${result.errors.length === 1 ? '' : 's'}):\n`);
  for (const line of result.errors) process.stderr.write(`  ${line}\n`);
  process.stderr.write('See docs/configuration.md for every variable and its accepted values.\n');
  process.exit(78); // EX_CONFIG from sysexits.h
}
