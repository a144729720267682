import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { StreamRetries } from '../../src/proxy/stream-retries.js';

// Issue 9 C: a replica stream that does not come back is tried again with doubling backoff (capped),
// and counted as retrying until it is open again or no longer wanted. Fake timers, no jitter.

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

function setup() {
  let retrying = 0;
  const tries: { vb: number; n: number; at: number }[] = [];
  const start = Date.now();
  const retries = new StreamRetries(
    { minBackoffMs: 100, maxBackoffMs: 350 },
    false,
    (delta) => {
      retrying += delta;
    },
    (vb, n) => tries.push({ vb, n, at: Date.now() - start }),
  );
  return { retries, tries, retrying: () => retrying };
}

describe('StreamRetries', () => {
  it('doubles the backoff after each failed try, up to its cap, counting the stream once', () => {
    const { retries, tries, retrying } = setup();
    for (let i = 0; i < 4; i++) {
      retries.schedule(5);
      vi.runOnlyPendingTimers();
    }
    expect(tries).toEqual([
      { vb: 5, n: 1, at: 100 },
      { vb: 5, n: 2, at: 300 },
      { vb: 5, n: 3, at: 650 },
      { vb: 5, n: 4, at: 1000 },
    ]);
    expect(retrying()).toBe(1);
    expect(retries.vbuckets).toEqual([5]);
  });

  it('keeps one try scheduled per stream, and stop cancels it and uncounts the stream', () => {
    const { retries, tries, retrying } = setup();
    retries.schedule(1);
    retries.schedule(1);
    retries.schedule(2);
    expect(retrying()).toBe(2);
    retries.stop(1);
    vi.runAllTimers();
    expect(tries.map((t) => t.vb)).toEqual([2]);
    expect(retrying()).toBe(1);
    retries.stopAll();
    expect(retrying()).toBe(0);
    expect(retries.vbuckets).toEqual([]);
  });
});
