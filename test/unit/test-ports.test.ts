import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { canListen, ephemeralRange, FETCH_BAD_PORTS, freePort } from '../support/process.js';
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

  it('freePort() never hands out a port fetch refuses (10080 is in its range: the draw moves on)', async () => {
    const [low] = ephemeralRange();
    const ceiling = Math.max(11_000, low) - 1;
    const at = (port: number) => (port - 10_000 + 0.5) / (ceiling - 10_000);
    const draws = [at(10_080), at(10_081), at(10_082), at(10_083)];
    const port = await freePort(() => draws.shift() ?? Math.random());
    assert.notEqual(port, 10_080);
    assert.ok(!FETCH_BAD_PORTS.has(port));
    await assert.rejects(fetch('http://127.0.0.1:10080/'), 'fetch refuses the port (so a test server there is unreachable)');
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
