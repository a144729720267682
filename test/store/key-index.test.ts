import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteArena } from '../../src/store/arena.js';
import { Entry } from '../../src/store/entry.js';
import { hashBytes, type KeyHash, KeyIndex } from '../../src/store/key-index.js';

// The vBucket's key index (issue 10): an open-addressing table over the keys' bytes. It must answer
// exactly as a Map keyed by the key would, through growth, shrinking and backward-shift deletions.

const arena = new ByteArena();
let seqno = 0n;
function entry(key: Buffer): Entry {
  return Entry.create(arena, key, Buffer.alloc(0), ++seqno, {
    cas: 1n,
    revSeqno: 1n,
    flags: 0,
    expiry: 0,
    datatype: 0,
    deleted: false,
  });
}

type Op = { kind: 'set' | 'delete' | 'get'; key: number };
// keys of 0-3 bytes ('' included); enough of them that the table grows, shrinks and its probe runs wrap
const keyOf = (n: number) => Buffer.from(String(n), 'latin1').subarray(0, n < 100 ? n % 3 : 3);
const op = fc.record({
  kind: fc.constantFrom('set', 'set', 'delete', 'get') as fc.Arbitrary<Op['kind']>,
  key: fc.nat(300),
});
/** Hashes to a few values only: long probe runs, runs that wrap, entries far from their home slot. */
const poor: KeyHash = (bytes, start, end) => (end - start) * 5 + (end > start ? bytes[start]! & 3 : 0);

describe('KeyIndex', () => {
  it('answers as a Map keyed by the key bytes would, through any mix of sets, deletes and gets', () => {
    fc.assert(
      fc.property(
        fc.constantFrom(hashBytes, poor),
        fc.array(op, { minLength: 20, maxLength: 600 }),
        (hash, ops) => {
          const index = new KeyIndex(hash);
          const model = new Map<string, Entry>();
          for (const o of ops) {
            const key = keyOf(o.key);
            const name = key.toString('hex');
            if (o.kind === 'set') {
              const e = entry(key);
              expect(index.set(e)).toBe(model.get(name));
              model.set(name, e);
            } else if (o.kind === 'delete') {
              const had = model.has(name);
              // deleting by any entry of the same key (a copy of the key, as rollback and purge do)
              expect(index.delete(entry(key))).toBe(had);
              model.delete(name);
            } else {
              expect(index.get(key)).toBe(model.get(name));
            }
            expect(index.size).toBe(model.size);
          }
          for (const [name, e] of model) expect(index.get(Buffer.from(name, 'hex'))).toBe(e);
          expect(new Set(index.values())).toEqual(new Set(model.values()));
        },
      ),
      { numRuns: 150 },
    );
  });

  it('finds every key after growing past 50,000 keys and shrinking back to 10', () => {
    const index = new KeyIndex();
    const n = 50_000;
    const entries: Entry[] = [];
    for (let i = 0; i < n; i++) {
      const e = entry(Buffer.from(`k${i}`));
      entries.push(e);
      index.set(e);
    }
    expect(index.size).toBe(n);
    const found = (i: number) => index.get(Buffer.from(`k${i}`)) === entries[i];
    expect(entries.every((_, i) => found(i))).toBe(true);
    expect(entries.slice(0, n - 10).every((e) => index.delete(e))).toBe(true);
    expect(index.size).toBe(10);
    expect(
      entries.every((_, i) => (i >= n - 10 ? found(i) : index.get(Buffer.from(`k${i}`)) === undefined)),
    ).toBe(true);
    expect([...index.values()]).toHaveLength(10);
  });

  it('is empty after clear', () => {
    const index = new KeyIndex();
    index.set(entry(Buffer.from('a')));
    index.clear();
    expect(index.size).toBe(0);
    expect(index.get(Buffer.from('a'))).toBeUndefined();
    expect([...index.values()]).toEqual([]);
  });
});
