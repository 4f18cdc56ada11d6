// The stack's floor: the work any gateway built on Fastify + undici + pino must do per call, and
// nothing else — a Fastify route, the JSON body parsed, the message re-serialized with a new id
// and POSTed through an undici Pool, the JSON answer parsed, its id restored, written as JSON,
// one pino access line (pino's default asynchronous destination, as Gatehouse writes). No auth,
// sessions, policy or validation. UPSTREAM=http://host:port/path, PORT, LOG_FILE (default /dev/null).
// Gatehouse ÷ this says how much of the gap to the bare forwarder is Gatehouse's own work.
import Fastify from 'fastify';
import { pino } from 'pino';
import { Pool } from 'undici';

const upstream = new URL(process.env.UPSTREAM);
const pool = new Pool(upstream.origin, { connections: 64, pipelining: 1 });
const log = pino({ level: 'info' }, pino.destination({ dest: process.env.LOG_FILE ?? '/dev/null', sync: false }));
const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
let nextId = 1;
const app = Fastify({ logger: false });
app.post('/mcp', async (request, reply) => {
  const started = performance.now();
  const message = request.body;
  const { body } = await pool.request({ path: upstream.pathname, method: 'POST', headers, body: JSON.stringify({ ...message, id: nextId++ }) });
  const answer = await body.json();
  answer.id = message.id;
  log.info({ requestId: request.id, method: request.method, status: 200, durationMs: performance.now() - started }, 'request');
  return reply.header('content-type', 'application/json').send(JSON.stringify(answer));
});
await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' });
process.stdout.write('ready\n');
