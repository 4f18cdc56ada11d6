import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canListen, ephemeralRange, freePort } from '../support/process.js';
import { redirectUri } from '../support/oauth.js';

// CI once failed with EADDRINUSE: a test's fixed OAuth redirect port, in the ephemeral range, was
// taken by another test process's outgoing connection. These pin the two rules that prevent it.
describe('ports the tests listen on', () => {
  it('freePort() hands out distinct ports outside the ephemeral range, free when handed out', async () => {
    const [low, high] = ephemeralRange();
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length, 'never the same port twice');
    for (const port of ports) {
      assert.ok(port < low || port > high, `${port} is inside the ephemeral range ${low}-${high}`);
      assert.ok(await canListen(port), `${port} is not free`);
    }
  });

  it('redirectUri() points at a listener that is already open and stays open, so nothing else can take its port', async () => {
    const first = new URL(await redirectUri('/a/cb'));
    const second = new URL(await redirectUri('/b/cb', 'localhost'));
    assert.equal(first.port, second.port, 'one listener per test process');
    assert.equal(second.hostname, 'localhost');
    assert.equal(await canListen(Number(first.port)), false, 'the port is held by the listener');
    const res = await fetch(`${first.origin}/a/cb?code=x`);
    assert.equal(res.status, 200);
  });
});
