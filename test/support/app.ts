import { Writable } from 'node:stream';
import { startGatehouse, type Gatehouse, type StartOptions } from '../../src/bootstrap.js';
import type { AppConfig } from '../../src/config/config.schema.js';
import { loadConfig } from '../../src/config/load-config.js';
import { createRootLogger } from '../../src/common/logging/logger.js';
import { PoliciesService } from '../../src/policies/policies.service.js';
import { UpstreamRegistry } from '../../src/upstreams/upstream-registry.service.js';
import { TEST_ENCRYPTION_KEYS } from './process.js';

/** Parses a config from the given variables only (no `.env`, no process environment). */
export function configFrom(env: Record<string, string>): AppConfig {
  const result = loadConfig({ NODE_ENV: 'test', LOG_LEVEL: 'info', LOG_FORMAT: 'json', GATEHOUSE_ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS, ...env }, null);
  if (!result.ok) throw new Error(result.errors.join('\n'));
  return result.config;
}

/** Every JSON log line a test app wrote, parsed, plus the raw text. */
export class LogCapture {
  readonly lines: Record<string, unknown>[] = [];
  raw = '';
  private partial = '';
  readonly stream = new Writable({
    write: (chunk: Buffer, _enc, done) => {
      const text = chunk.toString('utf8');
      this.raw += text;
      const lines = (this.partial + text).split('\n');
      this.partial = lines.pop() ?? '';
      for (const line of lines.filter(Boolean)) this.lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
}

export interface TestApp extends Gatehouse {
  logs: LogCapture;
}

/** Boots Gatehouse on a free port against `databaseUrl`, logging into memory. */
export async function startTestApp(
  databaseUrl: string,
  env: Record<string, string> = {},
  { waitForServers = true, ...options }: Omit<StartOptions, 'logger'> & { /** false: return before the server registry's first load (a test of that load's failure). */ waitForServers?: boolean } = {},
): Promise<TestApp> {
  const config = configFrom({ DATABASE_URL: databaseUrl, ...env });
  config.http.port = 0;
  const logs = new LogCapture();
  const logger = await createRootLogger(config, logs.stream);
  const app = await startGatehouse(config, { ...options, logger });
  // /mcp answers 503 until the policies and the upstream server registry have loaded once (just
  // after migrating; mcp-readiness.ts): wait for both, as a load balancer waits for /readyz, so
  // tests never race it (under a loaded machine the registry's load could trail the policies').
  if (config.database.migrate) await Promise.all([app.app.get(PoliciesService).whenLoaded(), waitForServers && app.app.get(UpstreamRegistry).whenLoaded()]);
  return Object.assign(app, { logs });
}
