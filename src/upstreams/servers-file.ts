import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { createServerSchema, type CreateServerInput } from './upstream-server.schema.js';

const fileSchema = z.union([z.array(z.unknown()), z.object({ servers: z.array(z.unknown()) }).strict()], {
  error: 'expected a list of servers, or { servers: [...] }',
});

/**
 * Reads GATEHOUSE_SERVERS_FILE (YAML or JSON — JSON is YAML), e.g. a mounted ConfigMap:
 *
 * ```yaml
 * servers:
 *   - name: everything
 *     transport: stdio
 *     command: npx
 *     args: [-y, "@modelcontextprotocol/server-everything"]
 * ```
 *
 * Each entry takes the same fields as `POST /api/v1/servers`. Any problem is reported with the
 * file, the entry and the field, and stops the start.
 */
export async function loadServersFile(path: string): Promise<CreateServerInput[]> {
  let raw: unknown;
  try {
    raw = parse(await readFile(path, 'utf8'));
  } catch (error) {
    throw new Error(`GATEHOUSE_SERVERS_FILE: cannot read ${path}: ${(error as Error).message.split('\n')[0]}`, { cause: error });
  }
  const top = fileSchema.safeParse(raw ?? []);
  if (!top.success) throw new Error(`GATEHOUSE_SERVERS_FILE: ${path}: expected a list of servers, or { servers: [...] }`);
  const entries = Array.isArray(top.data) ? top.data : top.data.servers;
  const problems: string[] = [];
  const servers: CreateServerInput[] = [];
  const seen = new Set<string>();
  entries.forEach((entry, i) => {
    const result = createServerSchema.safeParse(entry);
    if (!result.success) {
      for (const issue of result.error.issues) {
        const field = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.');
        problems.push(`servers[${i}]${field ? `.${field}` : ''}: ${issue.code === 'unrecognized_keys' ? 'is not a known field' : issue.message}`);
      }
      return;
    }
    if (seen.has(result.data.name)) problems.push(`servers[${i}].name: "${result.data.name}" is declared twice`);
    seen.add(result.data.name);
    servers.push(result.data);
  });
  if (problems.length) throw new Error(`GATEHOUSE_SERVERS_FILE: ${path}:\n  ${problems.join('\n  ')}`);
  return servers;
}
