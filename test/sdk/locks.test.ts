import { describe, expect, it } from 'vitest';
import { DEFAULT_LOCK_SECONDS, LOCKED_CAS, LockTable } from '../../src/node/locks.js';

describe('LockTable', () => {
  it('ends a lock at its time (the default for 0 or more than 30 s) and only the lock CAS holds it', () => {
    let now = 0;
    const locks = new LockTable(() => now);
    const key = Buffer.from('k');
    const cas = locks.lock(1, key, 100n, 0);
    expect(cas).not.toBe(100n);
    expect(cas).not.toBe(LOCKED_CAS);
    expect(locks.check(1, key, cas)).toEqual({ locked: true, holder: true });
    expect(locks.check(1, key, 100n)).toEqual({ locked: true, holder: false });
    expect(locks.isLocked(2, key)).toBe(false);
    now = DEFAULT_LOCK_SECONDS * 1000 - 1;
    expect(locks.isLocked(1, key)).toBe(true);
    now = DEFAULT_LOCK_SECONDS * 1000;
    expect(locks.check(1, key, cas)).toEqual({ locked: false });
    locks.lock(1, key, 100n, 31);
    now += DEFAULT_LOCK_SECONDS * 1000;
    expect(locks.isLocked(1, key)).toBe(false);
  });

  it('does not keep expired locks nobody reads again', () => {
    let now = 0;
    const locks = new LockTable(() => now);
    for (let i = 0; i < 5_000; i++) {
      locks.lock(0, Buffer.from(`k${i}`), 1n, 1);
      now += 10;
    }
    // locks last 1 s = 100 of them at a time; the sweeps keep the table within a small multiple of that
    expect(locks.size).toBeLessThan(1_100);
  });

  it('drops the locks of a vBucket that stops being active here', () => {
    const locks = new LockTable(() => 0);
    locks.lock(3, Buffer.from('a'), 1n, 10);
    locks.lock(4, Buffer.from('a'), 1n, 10);
    locks.dropVBucket(3);
    expect([locks.isLocked(3, Buffer.from('a')), locks.isLocked(4, Buffer.from('a'))]).toEqual([false, true]);
  });
});
