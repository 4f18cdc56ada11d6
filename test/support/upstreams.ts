import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { freePort } from './process.js';

/** The reference MCP server used as a real upstream in tests. */
export const EVERYTHING = resolve('node_modules/@modelcontextprotocol/server-everything/dist/index.js');

/** PIDs of live processes whose environment carries `marker`. */
export function processesWith(marker: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`, 'utf8').includes(marker)) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

export async function eventually<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Runs server-everything over HTTP (`streamableHttp` or `sse`) on a free port. */
export async function everythingOverHttp(mode: 'streamableHttp' | 'sse'): Promise<{ url: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [EVERYTHING, mode], { env: { PATH: process.env.PATH, PORT: String(port) }, stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  await eventually(`${mode} upstream on ${port}`, () =>
    fetch(`${base}/`).then(
      () => true,
      () => undefined,
    ),
  );
  return { url: mode === 'sse' ? `${base}/sse` : `${base}/mcp`, child };
}


/**
 * Runs the test fixture `script` (a `.mjs` in test/fixtures) with `args`, listening on a free
 * `PORT`, and resolves once it answers HTTP: its base URL and process (kill it when done).
 */
export async function fixtureOverHttp(script: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ base: string; child: ChildProcess }> {
  const port = await freePort();
  const child = spawn(process.execPath, [script, ...args], { env: { PATH: process.env.PATH, PORT: String(port), ...env }, stdio: 'ignore' });
  const base = `http://127.0.0.1:${port}`;
  await eventually(`${script} on ${port}`, () =>
    fetch(base).then(
      () => true,
      () => undefined,
    ),
  );
  return { base, child };
}

/**
 * Starts reading an SSE response and resolves with everything read once `text` appears;
 * rejects after `timeoutMs`. Call it before triggering the event, await it after.
 */
export function readStreamUntil(response: Response, text: string, timeoutMs = 10_000): Promise<string> {
  const reader = (response.body as ReadableStream<Uint8Array>).getReader();
  let seen = '';
  const read = (async () => {
    while (!seen.includes(text)) {
      const { done, value } = await reader.read();
      if (done) break;
      seen += Buffer.from(value).toString();
    }
    await reader.cancel();
    return seen;
  })();
  return Promise.race([read, new Promise<string>((_, reject) => setTimeout(() => reject(new Error(`"${text}" not seen on the stream within ${timeoutMs} ms`)), timeoutMs))]);
}

/** The reference upstream over stdio, as registered by most end-to-end tests. */
export const EVERYTHING_STDIO = { name: 'everything', transport: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] };

/**
 * Registers `server` on the Gatehouse at `baseUrl` (`POST /api/v1/servers`, 201 asserted) and
 * resolves once this replica reports it `connected`. `headers` carry the admin credentials.
 */
export async function registerConnected(baseUrl: string, server: { name: string } & Record<string, unknown> = EVERYTHING_STDIO, headers: Record<string, string> = {}): Promise<void> {
  const res = await fetch(`${baseUrl}/api/v1/servers`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(server) });
  if (res.status !== 201) throw new Error(`registering ${server.name}: HTTP ${res.status} ${await res.text()}`);
  await connectedOn(baseUrl, server.name, headers);
}

/** Waits until server `name` is connected on the Gatehouse at `baseUrl` (e.g. another replica). */
export async function connectedOn(baseUrl: string, name: string, headers: Record<string, string> = {}): Promise<void> {
  await eventually(`${name} connected on ${baseUrl}`, async () => {
    const v = (await (await fetch(`${baseUrl}/api/v1/servers/${name}`, { headers })).json()) as { status: { state: string } };
    return v.status.state === 'connected' ? true : undefined;
  });
}

/** The text of a tool result's content blocks, one per line. */
export const toolText = (result: unknown): string =>
  ((result as { content?: { type: string; text?: string }[] }).content ?? []).map((c) => c.text ?? '').join('\n');
