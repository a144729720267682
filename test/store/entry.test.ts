import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { ByteArena } from '../../src/store/arena.js';
import { Entry } from '../../src/store/entry.js';
import { StoreError, VBucket } from '../../src/store/index.js';
import type { Item } from '../../src/store/types.js';
import { createEntry, type StoredVersion, storedVersion } from '../helpers/store-fixtures.js';

// The compact per-version record (issue 10): fields in a slab header, key and value as offsets,
// an Item made on read. Whatever goes in comes back out, and entries never overlap in their slabs.

function expected(v: StoredVersion): Item {
  const item: Item = {
    key: v.key,
    value: v.value,
    cas: v.cas,
    flags: v.flags,
    expiry: v.expiry,
    revSeqno: v.revSeqno,
    bySeqno: v.seqno,
    datatype: v.datatype,
    deleted: v.deleted,
  };
  if (v.expired) (item as { expired?: boolean }).expired = true;
  if (v.deleteTime !== undefined) (item as { deleteTime?: number }).deleteTime = v.deleteTime;
  return item;
}

describe('Entry', () => {
  it('gives back every field of every version put in one arena, none overwriting another', () => {
    fc.assert(
      fc.property(fc.array(storedVersion, { minLength: 1, maxLength: 40 }), (versions) => {
        const arena = new ByteArena(2048);
        const entries = versions.map((v) => createEntry(arena, v));
        versions.forEach((v, i) => {
          const entry = entries[i]!;
          expect(entry.toItem()).toStrictEqual(expected(v));
          expect(entry.seqno).toBe(Number(v.seqno));
          expect(entry.cas).toBe(v.cas);
          expect(entry.revSeqno).toBe(v.revSeqno);
          expect(entry.expiry).toBe(v.expiry);
          expect(entry.deleteTime).toBe(v.deleteTime ?? 0);
          expect(entry.deleted).toBe(v.deleted);
          expect(entry.key().equals(v.key)).toBe(true);
          expect(entry.payloadLength).toBe(v.key.length + v.value.length);
        });
      }),
      { numRuns: 100 },
    );
  });

  it('keeps its own copy of key and value: changing the source buffers changes nothing', () => {
    const key = Buffer.from('key');
    const value = Buffer.from('value');
    const entry = Entry.create(new ByteArena(), key, value, 1n, {
      cas: 1n,
      revSeqno: 1n,
      flags: 0,
      expiry: 0,
      datatype: 0,
      deleted: false,
    });
    key.fill(0);
    value.fill(0);
    expect(entry.toItem().key.toString()).toBe('key');
    expect(entry.toItem().value.toString()).toBe('value');
  });

  it('starts latest and not dropped; being dropped keeps its fields', () => {
    const entry = Entry.create(new ByteArena(), Buffer.from('k'), Buffer.from('v'), 7n, {
      cas: 9n,
      revSeqno: 2n,
      flags: 1,
      expiry: 0,
      datatype: 1,
      deleted: true,
      deleteTime: 5,
    });
    expect(entry.supersededBy).toBe(0);
    expect(entry.dropped).toBe(false);
    entry.markDropped();
    expect(entry.dropped).toBe(true);
    expect(entry.deleted).toBe(true);
    expect(entry.toItem()).toMatchObject({ datatype: 1, deleted: true, deleteTime: 5, bySeqno: 7n });
  });

  it('refuses a seqno above 2^53 - 1 and fields that are not unsigned 32-bit, with a typed error', () => {
    const fields = { cas: 1n, revSeqno: 1n, flags: 0, expiry: 0, datatype: 0, deleted: false };
    const k = Buffer.from('k');
    expect(() => Entry.create(new ByteArena(), k, k, 2n ** 53n, fields)).toThrow(StoreError);
    expect(() => Entry.create(new ByteArena(), k, k, 1n, { ...fields, flags: 2 ** 32 })).toThrow(/flags/);
    expect(() => Entry.create(new ByteArena(), k, k, 1n, { ...fields, expiry: -1 })).toThrow(/expiry/);
  });
});

describe('VBucket with compact entries', () => {
  it('refuses a replicated seqno above 2^53 - 1 and stays as it was', () => {
    const vb = new VBucket(0, { state: p.VBucketState.Replica });
    const item: Item = {
      key: Buffer.from('a'),
      value: Buffer.from('1'),
      cas: 5n,
      flags: 0,
      expiry: 0,
      revSeqno: 1n,
      bySeqno: 2n ** 60n,
      datatype: 0,
      deleted: false,
    };
    expect(() => vb.apply(item)).toThrow(expect.objectContaining({ code: 'DCPX_ERR_STORE_SEQNO' }));
    expect(vb.highSeqno).toBe(0n);
    expect(vb.logLength).toBe(0);
    expect(vb.getVersion(Buffer.from('a'))).toBeUndefined();
    vb.apply({ ...item, bySeqno: 1n });
    expect(vb.getVersion(Buffer.from('a'))).toMatchObject({ bySeqno: 1n, cas: 5n });
  });

  it('counts its live documents exactly through writes, deletes, rollbacks, compactions and purges', () => {
    type Step = { kind: 'set' | 'del' | 'rollback' | 'compact' | 'purge'; key: number; at: number };
    const step = fc.record({
      kind: fc.constantFrom('set', 'set', 'set', 'del', 'rollback', 'compact', 'purge') as fc.Arbitrary<
        Step['kind']
      >,
      key: fc.nat(7),
      at: fc.nat(),
    });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4000 }), fc.array(step, { maxLength: 120 }), (history, steps) => {
        let now = 1_700_000_000_000;
        const vb = new VBucket(
          0,
          { state: p.VBucketState.Active },
          { now: () => now },
          undefined,
          undefined,
          { historyBytes: history },
        );
        for (const s of steps) {
          const key = Buffer.from(`k${s.key}`);
          if (s.kind === 'set') vb.mutate({ op: 'set', key, value: Buffer.from(String(s.at)) });
          else if (s.kind === 'del') vb.remove(key);
          else if (s.kind === 'rollback') vb.rollback(BigInt(s.at % (Number(vb.highSeqno) + 1)));
          else if (s.kind === 'compact') vb.compact(BigInt(s.at % (Number(vb.highSeqno) + 1)));
          else {
            now += 10_000;
            vb.purgeTombstones(5);
          }
          let live = 0;
          for (const item of vb.range(0n, vb.highSeqno, true)) if (!item.deleted) live++;
          expect(vb.liveCount).toBe(live);
        }
      }),
      { numRuns: 200 },
    );
  });

  it('serves a full-width cas and revseqno back unchanged', () => {
    const vb = new VBucket(0, { state: p.VBucketState.Replica });
    vb.apply({
      key: Buffer.from('a'),
      value: Buffer.from('1'),
      cas: 0xffff_ffff_ffff_fffen,
      flags: 0xffff_ffff,
      expiry: 0,
      revSeqno: 0xffff_ffff_ffff_ff00n,
      bySeqno: 3n,
      datatype: 0,
      deleted: false,
    });
    expect([...vb.range(0n, 3n)]).toMatchObject([
      { cas: 0xffff_ffff_ffff_fffen, revSeqno: 0xffff_ffff_ffff_ff00n, flags: 0xffff_ffff, bySeqno: 3n },
    ]);
  });
});
