import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import { isoTime } from './logger.js';

describe('log timestamps', () => {
  it("are exactly pino's isoTime, formatted once per second", () => {
    const realNow = Date.now;
    const base = Date.UTC(2026, 10, 30, 23, 59, 58, 0);
    const instants = [0, 1, 9, 10, 99, 100, 999, 1000, 1001, 1010, 1999, 2000, 2005, -1, -999, 86_400_000 + 7];
    for (const at of [base, 0, Date.UTC(9999, 11, 31, 23, 59, 59, 0), Date.UTC(2000, 1, 29)]) {
      for (const offset of instants) {
        const now = at + offset;
        Date.now = () => now;
        try {
          assert.equal(isoTime(), pino.stdTimeFunctions.isoTime(), new Date(now).toISOString());
        } finally {
          Date.now = realNow;
        }
        assert.equal(isoTime(now), `,"time":"${new Date(now).toISOString()}"`);
      }
    }
  });
});
