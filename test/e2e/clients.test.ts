import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { EVERYTHING, eventually } from '../support/upstreams.js';

/** Runs a tool from node_modules/.bin without blocking this process (the app serves in it). */
function run(bin: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(`node_modules/.bin/${bin}`, args, { timeout: 90_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, output: `${stdout}\n${stderr}` });
    });
  });
}

describe('third-party MCP tools against /mcp', () => {
  let db: TestDatabase;
  let app: TestApp;
  const home = mkdtempSync(join(tmpdir(), 'gatehouse-inspector-'));

  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url);
    const res = await fetch(`${app.url}/api/v1/servers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] }),
    });
    assert.equal(res.status, 201);
    await eventually('upstream connected', async () => {
      const v = (await (await fetch(`${app.url}/api/v1/servers/everything`)).json()) as { status: { state: string } };
      return v.status.state === 'connected' ? true : undefined;
    });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  // The conformance suite runs in conformance.test.ts.
  it('the MCP Inspector CLI lists and calls a tool through the gateway', async () => {
    const env = { HOME: home, MCP_CATALOG_PATH: join(home, 'mcp.json') };
    const list = await run('mcp-inspector', ['--cli', `${app.url}/mcp`, '--transport', 'http', '--method', 'tools/list'], env);
    assert.equal(list.code, 0, list.output);
    assert.match(list.output, /everything__echo/);
    const call = await run(
      'mcp-inspector',
      ['--cli', `${app.url}/mcp`, '--transport', 'http', '--method', 'tools/call', '--tool-name', 'everything__echo', '--tool-arg', 'message=from inspector'],
      env,
    );
    assert.equal(call.code, 0, call.output);
    assert.match(call.output, /Echo: from inspector/);
  });
});
