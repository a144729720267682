import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ByteArena } from '../../src/store/arena.js';
import { Entry } from '../../src/store/entry.js';
import {
  decodeRecords,
  encodeEntryRecord,
  encodeRecord,
  entryRecordBytes,
} from '../../src/store/record-codec.js';
import { createEntry, storedVersion } from '../helpers/store-fixtures.js';

// Compaction encodes each version's record straight from its entry's slab bytes (issue 10): the file
// must read back exactly as if the record had been encoded from the version's Item.

function encodeAll(entries: Entry[]): Buffer {
  const out = Buffer.alloc(entries.reduce((n, e) => n + entryRecordBytes(e), 0));
  let at = 0;
  for (const entry of entries) {
    const end = encodeEntryRecord(entry, out, at);
    expect(end - at).toBeLessThanOrEqual(entryRecordBytes(entry));
    at = end;
  }
  return out.subarray(0, at);
}

describe('encodeEntryRecord', () => {
  it('writes records that read back as the records of the same versions encoded from their items', () => {
    fc.assert(
      fc.property(fc.array(storedVersion, { minLength: 1, maxLength: 30 }), (versions) => {
        const arena = new ByteArena(2048);
        const entries = versions.map((v) => createEntry(arena, v));
        const fromEntries = encodeAll(entries);
        const fromItems = Buffer.concat(entries.map((e) => encodeRecord(e.toItem())));
        const read = decodeRecords(fromEntries, 'from-entries');
        expect(read.validLength).toBe(fromEntries.length);
        expect(read).toStrictEqual({
          ...decodeRecords(fromItems, 'from-items'),
          validLength: fromEntries.length,
        });
      }),
    );
  });

  it('writes a value of more than 64 KiB whole (msgpack bin 32)', () => {
    const value = Buffer.alloc(70_000, 7);
    const entry = Entry.create(new ByteArena(), Buffer.from('big'), value, 9n, {
      cas: 2n ** 64n - 1n,
      revSeqno: 3n,
      flags: 0xffff_ffff,
      expiry: 0,
      datatype: 0xff,
      deleted: false,
    });
    const read = decodeRecords(encodeAll([entry]), 'big');
    expect(read.items).toStrictEqual([entry.toItem()]);
  });
});
