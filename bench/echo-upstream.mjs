// A minimal, fast MCP server over HTTP (2025-era, stateless JSON responses): the "upstream
// called directly" baseline. TOOLS=n sets how many tools tools/list returns (echo is one).
import { createServer } from 'node:http';

const count = Number(process.env.TOOLS ?? 5);
const tools = Array.from({ length: count }, (_, i) => ({
  name: i === 0 ? 'echo' : `tool_${i}`,
  description: `Tool number ${i}: returns its input.`,
  inputSchema: { type: 'object', properties: { message: { type: 'string', description: 'text to echo' } }, required: ['message'] },
}));
// HEADER_TOOL=1 adds `header`, which answers with a request header's value (tests use it to
// see what Gatehouse sent upstream).
if (process.env.HEADER_TOOL === '1') {
  tools.push({ name: 'header', description: 'Returns the named request header.', inputSchema: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } });
}

function answer(msg, req) {
  switch (msg.method) {
    case 'initialize':
      return { protocolVersion: msg.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: {} }, serverInfo: { name: 'echo-upstream', version: '1' } };
    case 'ping':
      return {};
    case 'tools/list':
      return { tools };
    case 'tools/call':
      if (msg.params?.name === 'header') return { content: [{ type: 'text', text: String(req.headers[String(msg.params.arguments?.name).toLowerCase()] ?? '(none)') }] };
      return { content: [{ type: 'text', text: String(msg.params?.arguments?.message ?? '') }] };
    default:
      return undefined;
  }
}

createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let msg;
    try {
      msg = JSON.parse(Buffer.concat(chunks).toString());
    } catch {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","error":{"code":-32700,"message":"Parse error"},"id":null}');
      return;
    }
    if (msg.id === undefined) {
      res.writeHead(202).end();
      return;
    }
    const result = answer(msg, req);
    const body = result === undefined ? { jsonrpc: '2.0', id: msg.id, error: { code: -32601, message: 'Method not found' } } : { jsonrpc: '2.0', id: msg.id, result };
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
