import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteArena } from '../../src/store/arena.js';

// The arena the store keeps versions in (issue 10): reservations on 8-byte boundaries (an entry's CAS
// and revseqno are slab words), never overlapping, large ones in a slab of their own.

describe('ByteArena', () => {
  it('hands out 8-byte aligned, non-overlapping reservations that fit their slab', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 1500 }), { maxLength: 200 }), (sizes) => {
        const arena = new ByteArena(4096, 1024);
        const taken = new Map<Buffer, [number, number][]>();
        for (const n of sizes) {
          const at = arena.reserve(n);
          const slab = arena.last;
          expect(at % 8).toBe(0);
          expect(at + n).toBeLessThanOrEqual(slab.bytes.length);
          expect(slab.words.buffer).toBe(slab.bytes.buffer);
          expect(slab.words.byteOffset).toBe(slab.bytes.byteOffset);
          if (n > 1024) expect(slab.bytes.length).toBe(n);
          const ranges = taken.get(slab.bytes) ?? [];
          for (const [start, end] of ranges) expect(at >= end || at + n <= start).toBe(true);
          ranges.push([at, at + n]);
          taken.set(slab.bytes, ranges);
        }
      }),
      { numRuns: 200 },
    );
  });
});
