import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatRanges, parseRanges, vbucketOfKey } from '../../src/node/ranges.js';

describe('vBucket ranges', () => {
  it('parses ranges and single ids, and formats them back', () => {
    expect(parseRanges('0-3,7, 9-10')).toEqual([0, 1, 2, 3, 7, 9, 10]);
    expect(formatRanges([10, 0, 1, 2, 3, 7, 9])).toBe('0-3,7,9-10');
    expect(parseRanges('')).toEqual([]);
  });
  it('refuses reversed, out-of-range and malformed ranges with a message that quotes them', () => {
    expect(() => parseRanges('5-2')).toThrow(/5-2/);
    expect(() => parseRanges('0-64', 64)).toThrow(/out of range 0..63/);
    expect(() => parseRanges('a')).toThrow(/bad vBucket range "a"/);
  });
  it('round-trips any set of ids', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.nat(1023)), (ids) => {
        expect(parseRanges(formatRanges(ids))).toEqual([...ids].sort((a, b) => a - b));
      }),
    );
  });
});

describe('vbucketOfKey', () => {
  it('follows Couchbase’s crc32 rule (libcouchbase and the Go SDK agree on these)', () => {
    // crc32("foo") = 0x8c736521 → (0x8c73 & 0x7fff) = 0x0c73 = 3187; 3187 % 1024 = 115
    expect(vbucketOfKey('foo', 1024)).toBe(115);
    expect(vbucketOfKey('foo', 64)).toBe(3187 % 64);
  });
});
