import { describe, expect, it } from 'vitest';
import { UnfinishedFrames } from '../../src/node/unfinished-frames.js';

describe('the node-wide budget of unfinished frames', () => {
  it('closes the connection holding the biggest frame when that makes room for a smaller one', () => {
    const budget = new UnfinishedFrames(100);
    const evicted: string[] = [];
    const a = budget.open(() => evicted.push('a'));
    const b = budget.open(() => evicted.push('b'));
    expect(a.acquire(80)).toBe(true);
    expect(b.acquire(30)).toBe(true);
    expect(evicted).toEqual(['a']);
    expect(budget.bytes).toBe(30);
    // a's late release (its decoder disposing) gives nothing back twice
    a.release(80);
    expect(budget.bytes).toBe(30);
  });

  it('refuses a newcomer that is not smaller than every holder, and gives bytes back on release and close', () => {
    const budget = new UnfinishedFrames(100);
    const evicted: string[] = [];
    const a = budget.open(() => evicted.push('a'));
    const b = budget.open(() => evicted.push('b'));
    expect(a.acquire(60)).toBe(true);
    expect(b.acquire(60)).toBe(false);
    expect(evicted).toEqual([]);
    a.release(60);
    expect(b.acquire(60)).toBe(true);
    b.close();
    expect(budget.bytes).toBe(0);
  });
});
