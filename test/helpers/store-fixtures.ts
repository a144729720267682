import fc from 'fast-check';
import { ActiveStream } from '../../src/producer/active-stream.js';
import * as p from '../../src/protocol/index.js';
import type { ByteArena } from '../../src/store/arena.js';
import { Entry, type EntryFields } from '../../src/store/entry.js';
import type { Item, VBucket } from '../../src/store/index.js';
import { bytes, u8, u32, u64 } from './arbitraries.js';

/** A replicated item at `seqno` (key `k<seqno>`, CAS = seqno), as a consumer applies it. */
export function itemAt(seqno: number): Item {
  return {
    key: Buffer.from(`k${seqno}`),
    value: Buffer.from('v'),
    cas: BigInt(seqno),
    flags: 0,
    expiry: 0,
    revSeqno: 1n,
    bySeqno: BigInt(seqno),
    datatype: 0,
    deleted: false,
  };
}

/** A producer stream of `vb` from seqno 0, forever, with no DCP_CONTROL options (plain rendering). */
export function streamFromZero(vb: VBucket): ActiveStream {
  return new ActiveStream({
    vb,
    opaque: 1,
    flags: 0,
    startSeqno: 0n,
    endSeqno: p.SEQNO_INFINITY,
    takeover: false,
    render: {
      deleteTimes: false,
      expiryOpcode: false,
      noValue: false,
      noValueKeepDatatype: false,
      markerV22: false,
      syncWrites: false,
    },
  });
}

/** Any version a store may hold, for the compact-entry tests (src/store/entry.ts). */
export const storedVersion = fc.record({
  key: bytes(250),
  // past 255 bytes (bin 16) and past the arena's 1 KiB bound, so some entries get an allocation of their own
  value: bytes(1500),
  seqno: fc.bigInt({ min: 0n, max: BigInt(Number.MAX_SAFE_INTEGER) }),
  cas: u64,
  revSeqno: u64,
  flags: u32,
  expiry: u32,
  datatype: u8,
  deleted: fc.boolean(),
  expired: fc.option(fc.constant(true), { nil: undefined }),
  deleteTime: fc.option(u32, { nil: undefined }),
});

export type StoredVersion = typeof storedVersion extends fc.Arbitrary<infer T> ? T : never;

/** `v` stored as a compact entry in `arena`. */
export function createEntry(arena: ByteArena, v: StoredVersion): Entry {
  const fields: EntryFields = v;
  return Entry.create(arena, v.key, v.value, v.seqno, fields);
}
