import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from './backoff.js';

describe('backoffDelay', () => {
  const bounds = { min: 100, max: 5_000 };
  it('doubles per attempt up to max, jittered within the upper half', () => {
    assert.deepEqual([0, 1, 2, 3, 10].map((a) => backoffDelay(a, bounds, () => 0)), [50, 100, 200, 400, 2_500]);
    assert.deepEqual([0, 1, 2, 3, 10].map((a) => backoffDelay(a, bounds, () => 0.999999)), [100, 200, 400, 800, 5_000]);
    assert.equal(backoffDelay(1_000, bounds, () => 0.5), 3_750, 'no overflow for large attempts');
  });
});
