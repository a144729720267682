import { promises as fsp } from 'node:fs';
import { crc32 } from 'node:zlib';
import { pack, unpack } from 'msgpackr';
import { MetadataError } from './errors.js';
import type { Change } from './state.js';

/**
 * The embedded store's write-ahead log: files `wal-<seq>` of framed records, one record per revision:
 *
 *   u32 length of payload | u32 crc32 of payload | payload = msgpack [revision, [[key, value|null, lease|null]...]]
 *
 * A crash can tear only the last batch written (a batch is acknowledged after its fsync), so recovery
 * drops a short or mismatching record at the end of the newest file; anywhere else it is corruption.
 */

export interface WalRecord {
  readonly revision: number;
  readonly changes: readonly Change[];
}

type WireChange = [string, Uint8Array | null, string | null];

export function encodeRecord(record: WalRecord): Buffer {
  const wire: [number, WireChange[]] = [
    record.revision,
    record.changes.map((c) => [c.key, c.value ?? null, c.lease ?? null]),
  ];
  const payload = pack(wire);
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(crc32(payload), 4);
  payload.copy(frame, 8);
  return frame;
}

export interface ParsedWal {
  readonly records: WalRecord[];
  /** Bytes of whole, valid records from the start; less than the file's size when the tail is torn. */
  readonly validBytes: number;
}

function decodePayload(payload: Buffer): WalRecord {
  const [revision, wire] = unpack(payload) as [number, WireChange[]];
  const changes = wire.map(([key, value, lease]): Change => {
    if (value === null) return { key };
    const bytes = new Uint8Array(value);
    return lease === null ? { key, value: bytes } : { key, value: bytes, lease };
  });
  return { revision, changes };
}

/** Parses a WAL file's bytes, stopping at the first short or corrupt record. */
export function parseWal(data: Buffer): ParsedWal {
  const records: WalRecord[] = [];
  let offset = 0;
  while (offset + 8 <= data.length) {
    const length = data.readUInt32LE(offset);
    const sum = data.readUInt32LE(offset + 4);
    if (offset + 8 + length > data.length) break;
    const payload = data.subarray(offset + 8, offset + 8 + length);
    if (crc32(payload) !== sum) break;
    try {
      records.push(decodePayload(payload));
    } catch {
      break;
    }
    offset += 8 + length;
  }
  return { records, validBytes: offset };
}

export const walName = (seq: number) => `wal-${String(seq).padStart(12, '0')}`;
export const walSeq = (name: string): number | undefined => {
  const match = /^wal-(\d{12})$/.exec(name);
  return match ? Number(match[1]) : undefined;
};

/** Reads one WAL file; a torn tail is truncated away when `isLast`, else it is an error. */
export async function readWal(
  file: string,
  isLast: boolean,
): Promise<{ records: WalRecord[]; tornBytes: number }> {
  const data = await fsp.readFile(file);
  const parsed = parseWal(data);
  const tornBytes = data.length - parsed.validBytes;
  if (tornBytes > 0) {
    if (!isLast) {
      throw new MetadataError(
        'DCPX_ERR_META_CORRUPT',
        `${file}: bad record at byte ${parsed.validBytes} of ${data.length}, and newer log files follow`,
      );
    }
    await fsp.truncate(file, parsed.validBytes);
  }
  return { records: parsed.records, tornBytes };
}
