import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { ENTRY_HEADER_BYTES, type Entry } from './entry.js';
import { StoreError } from './errors.js';
import type { Item, SnapshotRange, SyncRole } from './types.js';

// On-disk records of a vBucket log file: | u32 payload length | u32 crc32 of payload | msgpack payload |.
// The payload is an array, in this order (compact and schema-stable):
// [key, value, cas, flags, expiry, revSeqno, bySeqno, datatype, deleted, expired, deleteTime]
// and, for a sync write's version (DESIGN.md "Part 3"), two more: [..., kind, arg] with kind 1 prepare
// (arg: durability level), 2 commit or 3 abort (arg: prepared seqno).
// or a snapshot record: [start, end] (a replica received this snapshot marker) or [] (the data
// became the vBucket's own). Snapshot records sit in order with the items, so the snapshot range
// read back after a crash always matches the items read back (dcp-spec §4.4 resume position).
// A rewritten or compacted file starts with a history record ['h', history start, purge seqno,
// max deleted revseqno, high prepared seqno, high completed seqno] (older files have three or four):
// superseded versions at or below the history start are not in the file (a rollback below it goes
// to 0), nor tombstones at or below the purge seqno (dcp-spec §7 rule 3).

export const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });
const RECORD_HEADER = 8;

const SYNC_KIND = { prepare: 1, commit: 2, abort: 3 } as const;

function syncFields(sync: SyncRole): [number, number | bigint] {
  return [SYNC_KIND[sync.kind], sync.kind === 'prepare' ? sync.level : sync.preparedSeqno];
}

export function encodeRecord(item: Item): Buffer {
  const fields: unknown[] = [
    item.key,
    item.value,
    item.cas,
    item.flags,
    item.expiry,
    item.revSeqno,
    item.bySeqno,
    item.datatype,
    item.deleted ? 1 : 0,
    item.expired ? 1 : 0,
    item.deleteTime ?? 0,
  ];
  if (item.sync) fields.push(...syncFields(item.sync));
  return frameRecord(packr.pack(fields));
}

/**
 * Most bytes `encodeEntryRecord` writes for `entry`: framing, array header, the two bin headers and
 * the nine other fields at their widest.
 */
export function entryRecordBytes(entry: Entry): number {
  return RECORD_HEADER + ENTRY_RECORD_FIXED_BYTES + SYNC_RECORD_BYTES + entry.keyLength + entry.valueLength;
}

/** The two sync fields at their widest (a small int, a u64). */
const SYNC_RECORD_BYTES = 1 + 9;

/** Array header (1), two bin headers (5 each), u64 ×3 (9 each), u32 ×3 (5 each), three small ints (≤ 2 each). */
const ENTRY_RECORD_FIXED_BYTES = 1 + 5 + 5 + 27 + 15 + 6;

/**
 * Writes the record of `entry` into `out` at `at` (room for `entryRecordBytes(entry)` needed) and
 * returns the offset after it. The same payload array as `encodeRecord(entry.toItem())`, written by
 * hand from the entry's slab bytes: no Item, bigint or Buffer view is made (compaction writes every
 * latest version of a file this way, issue 10). Integers go as fixed-width msgpack types, which
 * `decodeRecords` reads alike.
 */
export function encodeEntryRecord(entry: Entry, out: Buffer, at: number): number {
  const slab = entry.slab.bytes;
  const from = entry.at;
  const payloadStart = at + RECORD_HEADER;
  let p = payloadStart;
  const sync = entry.sync;
  out[p++] = sync ? 0x9d : 0x9b; // fixarray of 13 or 11
  const keyStart = from + ENTRY_HEADER_BYTES;
  const valueStart = keyStart + entry.keyLength;
  p = writeBin(out, p, slab, keyStart, entry.keyLength);
  p = writeBin(out, p, slab, valueStart, entry.valueLength);
  // cas and revSeqno as uint64 (msgpack is big-endian; the slab holds them little-endian)
  out[p++] = 0xcf;
  p = copyU64(out, p, slab, from);
  out[p++] = 0xce;
  out.writeUInt32BE(slab.readUInt32LE(from + 16), p); // flags
  p += 4;
  out[p++] = 0xce;
  out.writeUInt32BE(slab.readUInt32LE(from + 20), p); // expiry
  p += 4;
  out[p++] = 0xcf;
  p = copyU64(out, p, slab, from + 8);
  out[p++] = 0xcf; // bySeqno (at most 2^53 - 1)
  out.writeUInt32BE(Math.floor(entry.seqno / 0x1_0000_0000), p);
  out.writeUInt32BE(entry.seqno >>> 0, p + 4);
  p += 8;
  const datatype = entry.datatype;
  if (datatype > 0x7f) out[p++] = 0xcc;
  out[p++] = datatype;
  out[p++] = entry.deleted ? 1 : 0;
  out[p++] = entry.expired ? 1 : 0;
  out[p++] = 0xce;
  out.writeUInt32BE(slab.readUInt32LE(from + 24), p); // deleteTime (0 when none was recorded)
  p += 4;
  if (sync) {
    const [kind, arg] = syncFields(sync);
    out[p++] = kind;
    out[p++] = 0xcf;
    const n = Number(arg);
    out.writeUInt32BE(Math.floor(n / 0x1_0000_0000), p);
    out.writeUInt32BE(n >>> 0, p + 4);
    p += 8;
  }
  out.writeUInt32BE(p - payloadStart, at);
  out.writeUInt32BE(crc32(out.subarray(payloadStart, p)), at + 4);
  return p;
}

function writeBin(out: Buffer, p: number, src: Buffer, start: number, length: number): number {
  if (length < 0x100) {
    out[p++] = 0xc4;
    out[p++] = length;
  } else if (length < 0x1_0000) {
    out[p++] = 0xc5;
    out.writeUInt16BE(length, p);
    p += 2;
  } else {
    out[p++] = 0xc6;
    out.writeUInt32BE(length, p);
    p += 4;
  }
  src.copy(out, p, start, start + length);
  return p + length;
}

/** Slab words are in the platform's byte order (a BigUint64Array). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function copyU64(out: Buffer, p: number, slab: Buffer, from: number): number {
  if (LITTLE_ENDIAN) for (let i = 7; i >= 0; i--) out[p++] = slab[from + i]!;
  else slab.copy(out, p, from, from + 8);
  return LITTLE_ENDIAN ? p : p + 8;
}

/** A snapshot record: the marker `range`, or undefined when the vBucket's data became its own. */
export function encodeSnapshotRecord(range: SnapshotRange | undefined): Buffer {
  return frameRecord(packr.pack(range ? [range.start, range.end] : []));
}

/** A history record: versions superseded at or below `historyStart` and purged tombstones are not in the file. */
export function encodeHistoryRecord(
  historyStart: bigint,
  purgeSeqno: bigint,
  maxDeletedRevSeqno: bigint,
  highPreparedSeqno = 0n,
  highCompletedSeqno = 0n,
): Buffer {
  return frameRecord(
    packr.pack(['h', historyStart, purgeSeqno, maxDeletedRevSeqno, highPreparedSeqno, highCompletedSeqno]),
  );
}

function frameRecord(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(RECORD_HEADER + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.writeUInt32BE(crc32(payload), 4);
  payload.copy(out, RECORD_HEADER);
  return out;
}

function big(value: unknown): bigint {
  return typeof value === 'bigint' ? value : BigInt(value as number);
}

function decodeItem(fields: unknown[], file: string, offset: number): Item {
  if (fields.length !== 11 && fields.length !== 13) {
    throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: record at ${offset} is not an item`);
  }
  const [key, value, cas, flags, expiry, revSeqno, bySeqno, datatype, deleted, expired, deleteTime] = fields;
  const item: Item = {
    key: Buffer.from(key as Uint8Array),
    value: Buffer.from(value as Uint8Array),
    cas: big(cas),
    flags: Number(flags),
    expiry: Number(expiry),
    revSeqno: big(revSeqno),
    bySeqno: big(bySeqno),
    datatype: Number(datatype),
    deleted: deleted === 1,
    ...(expired === 1 ? { expired: true } : {}),
    ...(deleted === 1 ? { deleteTime: Number(deleteTime) } : {}),
  };
  if (fields.length === 13) {
    const kind = Number(fields[11]);
    const arg = fields[12];
    let sync: SyncRole;
    if (kind === 1) {
      const level = Number(arg);
      if (level !== 1 && level !== 2 && level !== 3) {
        throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: record at ${offset}: bad durability level`);
      }
      sync = { kind: 'prepare', level };
    } else if (kind === 2 || kind === 3) {
      sync = { kind: kind === 2 ? 'commit' : 'abort', preparedSeqno: big(arg) };
    } else {
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: record at ${offset}: bad sync kind ${kind}`);
    }
    return { ...item, sync };
  }
  return item;
}

export interface DecodedRecords {
  items: Item[];
  /** The last snapshot record's range (undefined when none, or when the last one says "own data"). */
  snapshot: SnapshotRange | undefined;
  /** Whether the file holds any snapshot or history record (files of the previous format have none). */
  snapshotRecords: boolean;
  /** The history start and purge seqno the file was written with (0 when it has no such record). */
  historyStart: bigint;
  purgeSeqno: bigint;
  /** Highest revision seqno of a purged tombstone (0 when the record has none). */
  maxDeletedRevSeqno: bigint;
  /** The vBucket's high prepared / completed seqnos when the file was written (0 when none). */
  highPreparedSeqno: bigint;
  highCompletedSeqno: bigint;
  /** Bytes of whole, valid records; anything after is a torn or corrupt tail. */
  validLength: number;
}

/**
 * Decodes the records of a log file. A torn tail (short record or bad checksum, as an unclean stop
 * leaves) ends the valid part; the caller truncates the file there.
 */
export function decodeRecords(data: Buffer, file: string): DecodedRecords {
  const items: Item[] = [];
  let snapshot: SnapshotRange | undefined;
  let snapshotRecords = false;
  let historyStart = 0n;
  let purgeSeqno = 0n;
  let maxDeletedRevSeqno = 0n;
  let highPreparedSeqno = 0n;
  let highCompletedSeqno = 0n;
  let at = 0;
  while (data.length - at >= RECORD_HEADER) {
    const length = data.readUInt32BE(at);
    const end = at + RECORD_HEADER + length;
    if (end > data.length) break;
    const payload = data.subarray(at + RECORD_HEADER, end);
    if (crc32(payload) !== data.readUInt32BE(at + 4)) break;
    const fields = packr.unpack(payload) as unknown;
    if (!Array.isArray(fields)) {
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: record at ${at} is not an array`);
    }
    if (fields.length === 0 || fields.length === 2) {
      snapshotRecords = true;
      snapshot = fields.length === 2 ? { start: big(fields[0]), end: big(fields[1]) } : undefined;
    } else if (fields.length >= 3 && fields.length <= 6 && fields[0] === 'h') {
      // only files of the current format have history records: no range to take from the metadata
      snapshotRecords = true;
      historyStart = big(fields[1]);
      purgeSeqno = big(fields[2]);
      maxDeletedRevSeqno = fields.length >= 4 ? big(fields[3]) : 0n;
      highPreparedSeqno = fields.length >= 5 ? big(fields[4]) : 0n;
      highCompletedSeqno = fields.length >= 6 ? big(fields[5]) : 0n;
    } else items.push(decodeItem(fields, file, at));
    at = end;
  }
  return {
    items,
    snapshot,
    snapshotRecords,
    historyStart,
    purgeSeqno,
    maxDeletedRevSeqno,
    highPreparedSeqno,
    highCompletedSeqno,
    validLength: at,
  };
}
