// The SDK's own reference serving: createMcpHandler (v2) with an McpServer and the same echo
// tool, mounted on node:http with toNodeHandler. Serves both eras (legacy: stateless).
import { createServer } from 'node:http';
import { McpServer, createMcpHandler } from '@modelcontextprotocol/server';
import { toNodeHandler } from '@modelcontextprotocol/node';
import { z } from 'zod';

const handler = createMcpHandler(() => {
  const server = new McpServer({ name: 'sdk-reference', version: '1' });
  server.registerTool('echo', { description: 'Returns its input.', inputSchema: z.object({ message: z.string() }) }, ({ message }) => ({
    content: [{ type: 'text', text: message }],
  }));
  return server;
});
const node = toNodeHandler(handler);
createServer((req, res) => void node(req, res)).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
