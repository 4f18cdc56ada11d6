import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestApp, type TestApp } from '../support/app.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

/**
 * A client connection that has sent nothing yet (a browser's or undici's preconnect; undici
 * opens one when a request is aborted) must not hold a graceful shutdown to SHUTDOWN_TIMEOUT.
 * Node's closeIdleConnections leaves such a connection open (it counts as awaiting its first
 * request's headers); was: every shutdown after such a connection waited the full timeout and
 * reported `drained: false` (exit 1).
 */
describe('graceful shutdown with a silent client connection', () => {
  let db: TestDatabase;
  let app: TestApp;
  before(async () => {
    db = await createTestDatabase();
    app = await startTestApp(db.url, { SHUTDOWN_TIMEOUT: '5000' });
  });
  after(async () => {
    await app.shutdown('test done');
    await db.drop();
  });

  it('closes it and drains at once (exit code 0)', async () => {
    const { port } = new URL(app.url);
    const socket: Socket = connect(Number(port), '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => undefined);
    // Let the server accept it.
    await new Promise((r) => setTimeout(r, 50));
    const started = Date.now();
    const code = await app.shutdown('test');
    const took = Date.now() - started;
    await closed;
    assert.equal(code, 0, 'drained cleanly');
    assert.ok(took < 3_000, `shutdown took ${took} ms: the silent connection held the drain to SHUTDOWN_TIMEOUT`);
  });
});
