import { crc32 } from 'node:zlib';
import { Packr } from 'msgpackr';
import { StoreError } from './errors.js';
import type { Item, SnapshotRange } from './types.js';

// On-disk records of a vBucket log file: | u32 payload length | u32 crc32 of payload | msgpack payload |.
// The payload is an array, in this order (compact and schema-stable):
// [key, value, cas, flags, expiry, revSeqno, bySeqno, datatype, deleted, expired, deleteTime]
// or a snapshot record: [start, end] (a replica received this snapshot marker) or [] (the data
// became the vBucket's own). Snapshot records sit in order with the items, so the snapshot range
// read back after a crash always matches the items read back (dcp-spec §4.4 resume position).
// A rewritten or compacted file starts with a history record ['h', history start, purge seqno,
// max deleted revseqno] (files before the last field have three):
// superseded versions at or below the history start are not in the file (a rollback below it goes
// to 0), nor tombstones at or below the purge seqno (dcp-spec §7 rule 3).

export const packr = new Packr({ useRecords: false, int64AsType: 'bigint', mapsAsObjects: true });
const RECORD_HEADER = 8;

export function encodeRecord(item: Item): Buffer {
  const payload = packr.pack([
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
  ]);
  return frameRecord(payload);
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
): Buffer {
  return frameRecord(packr.pack(['h', historyStart, purgeSeqno, maxDeletedRevSeqno]));
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
  if (fields.length !== 11) {
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
    } else if ((fields.length === 3 || fields.length === 4) && fields[0] === 'h') {
      // only files of the current format have history records: no range to take from the metadata
      snapshotRecords = true;
      historyStart = big(fields[1]);
      purgeSeqno = big(fields[2]);
      maxDeletedRevSeqno = fields.length === 4 ? big(fields[3]) : 0n;
    } else items.push(decodeItem(fields, file, at));
    at = end;
  }
  return { items, snapshot, snapshotRecords, historyStart, purgeSeqno, maxDeletedRevSeqno, validLength: at };
}
