// A minimal MCP server over stdio (newline-delimited JSON-RPC): tools/list and an echo tool.
import { createInterface } from 'node:readline';

const tools = [{ name: 'echo', description: 'Returns its input.', inputSchema: { type: 'object', properties: { message: { type: 'string' } } } }];
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch {
    return;
  }
  if (msg.id === undefined) return;
  let result;
  if (msg.method === 'initialize') result = { protocolVersion: msg.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'stdio-echo', version: '1' } };
  else if (msg.method === 'ping') result = {};
  else if (msg.method === 'tools/list') result = { tools };
  else if (msg.method === 'tools/call') result = { content: [{ type: 'text', text: String(msg.params?.arguments?.message ?? '') }] };
  const reply = result === undefined ? { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } } : { jsonrpc: '2.0', id: msg.id, result };
  process.stdout.write(`${JSON.stringify(reply)}\n`);
});
