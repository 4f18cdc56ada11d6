import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ChangeBusService } from '../../database/change-bus.service.js';
import type { LiveSession, SessionsService } from '../../sessions/sessions.service.js';
import type { ClientRequests } from '../pipeline/server-requests.js';
import type { NotificationFanout } from './notification-fanout.js';
import { LegacySessions } from './legacy-sessions.js';

const session = { id: 's-1' } as LiveSession;
const sessions = () => new LegacySessions({} as SessionsService, {} as ChangeBusService, {} as NotificationFanout, {} as ClientRequests);
const inflight = (s: LegacySessions) => (s as unknown as { inflight: Map<string, AbortController> }).inflight;

describe('LegacySessions request tracking (notifications/cancelled)', () => {
  it('track/untrack: the request is findable under <session id>:<JSON id> until untracked; a later request reusing the id keeps its own entry', () => {
    const s = sessions();
    const first = new AbortController();
    const key = s.track(session, 7, first);
    assert.equal(key, 's-1:7');
    assert.equal(inflight(s).get('s-1:7'), first);
    assert.equal(s.track(session, '7', new AbortController()), 's-1:"7"', 'a string id is not the number');
    const second = new AbortController();
    s.track(session, 7, second);
    s.untrack(key, first);
    assert.equal(inflight(s).get('s-1:7'), second, 'the first request ending does not untrack the second');
    s.untrack(key, second);
    assert.equal(inflight(s).has('s-1:7'), false);
  });

  it('tracked: untracked once the run settles, either way', async () => {
    const s = sessions();
    const abort = new AbortController();
    const ok = s.tracked(session, { id: 1 }, abort, () => Promise.resolve('done'));
    assert.equal(inflight(s).get('s-1:1'), abort);
    assert.equal(await ok, 'done');
    assert.equal(inflight(s).size, 0);
    await assert.rejects(
      s.tracked(session, { id: 2 }, abort, () => Promise.reject(new Error('no'))),
      /no/,
    );
    assert.equal(inflight(s).size, 0);
  });
});
