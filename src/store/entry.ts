import type { ByteArena, Slab } from './arena.js';
import { StoreError } from './errors.js';
import type { Item, SyncRole } from './types.js';

// One version as a vBucket keeps it: a small object with what the store reads on its hot paths
// (seqnos, lengths, flag bits) and an 8-byte aligned offset into an arena slab holding the rest: cas
// u64 @0 and revSeqno u64 @8 (slab words), flags u32 LE @16, expiry u32 LE @20, deleteTime u32 LE @24,
// then the key, then the value. An `Item` (with Buffer views into the slab and bigint fields) is made
// only when one is read: an Item object, three bigints and two Buffer views cost several hundred bytes
// per version kept (issue 10), the entry about 80 bytes besides its slab bytes.
//
// Sync writes (DESIGN.md "Part 3") use spare flag bits: PREPARE (with the durability level in two more
// bits), COMMIT or ABORT; a commit or abort also keeps its prepared seqno as a float64 (exact below
// 2^53) in 8 slab bytes after the value. Plain versions cost exactly what they did.

/** Bytes before the key in an entry's slab bytes. */
export const ENTRY_HEADER_BYTES = 28;

const DATATYPE = 0xff;
const DELETED = 0x100;
const EXPIRED = 0x200;
const HAS_DELETE_TIME = 0x400;
const DROPPED = 0x800;
const PREPARE = 0x1000;
const COMMIT = 0x2000;
const ABORT = 0x4000;
const SYNC = PREPARE | COMMIT | ABORT;
const LEVEL_SHIFT = 15;
const LEVEL = 0x3 << LEVEL_SHIFT;
const U32 = 0xffff_ffff;

/** Seqnos are kept as numbers: a seqno above this cannot be held (kv_engine's never come near). */
export const MAX_ENTRY_SEQNO = BigInt(Number.MAX_SAFE_INTEGER);

/** The fields of a version besides its key, value and seqno. */
export interface EntryFields {
  readonly cas: bigint;
  readonly revSeqno: bigint;
  readonly flags: number;
  readonly expiry: number;
  readonly datatype: number;
  readonly deleted: boolean;
  readonly expired?: boolean;
  readonly deleteTime?: number;
  /** A sync write's version (absent on plain ones). */
  readonly sync?: SyncRole;
}

function u32(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > U32) {
    throw new StoreError('DCPX_ERR_STORE_BAD_ITEM', `${what} ${value} is not an unsigned 32-bit integer`);
  }
  return value;
}

export class Entry {
  /** Seqno of the version that replaced this one; 0 while it is the latest. */
  supersededBy: number;

  private constructor(
    /** The slab holding the header, key and value, from `at` (a multiple of 8). */
    readonly slab: Slab,
    readonly at: number,
    readonly keyLength: number,
    readonly valueLength: number,
    readonly seqno: number,
    /** Datatype and the flag bits above. */
    private bits: number,
  ) {
    this.supersededBy = 0;
  }

  /** Copies key, value and fields into `arena`. `seqno` must be at most MAX_ENTRY_SEQNO. */
  static create(arena: ByteArena, key: Buffer, value: Buffer, seqno: bigint, fields: EntryFields): Entry {
    if (seqno > MAX_ENTRY_SEQNO || seqno < 0n) {
      throw new StoreError(
        'DCPX_ERR_STORE_SEQNO',
        `seqno ${seqno} is above 2^53 - 1, which the store cannot hold`,
      );
    }
    const flags = u32(fields.flags, 'flags');
    const expiry = u32(fields.expiry, 'expiry');
    const deleteTime = fields.deleteTime === undefined ? 0 : u32(fields.deleteTime, 'deleteTime');
    const sync = fields.sync;
    const completes = sync !== undefined && sync.kind !== 'prepare';
    const at = arena.reserve(ENTRY_HEADER_BYTES + key.length + value.length + (completes ? 8 : 0));
    const slab = arena.last;
    const bytes = slab.bytes;
    slab.words[at >>> 3] = fields.cas;
    slab.words[(at >>> 3) + 1] = fields.revSeqno;
    bytes.writeUInt32LE(flags, at + 16);
    bytes.writeUInt32LE(expiry, at + 20);
    bytes.writeUInt32LE(deleteTime, at + 24);
    key.copy(bytes, at + ENTRY_HEADER_BYTES);
    value.copy(bytes, at + ENTRY_HEADER_BYTES + key.length);
    let bits =
      (fields.datatype & DATATYPE) |
      (fields.deleted ? DELETED : 0) |
      (fields.expired ? EXPIRED : 0) |
      (fields.deleteTime === undefined ? 0 : HAS_DELETE_TIME);
    if (sync !== undefined) {
      if (sync.kind === 'prepare') bits |= PREPARE | ((sync.level & 0x3) << LEVEL_SHIFT);
      else {
        bits |= sync.kind === 'commit' ? COMMIT : ABORT;
        bytes.writeDoubleLE(Number(sync.preparedSeqno), at + ENTRY_HEADER_BYTES + key.length + value.length);
      }
    }
    return new Entry(slab, at, key.length, value.length, Number(seqno), bits);
  }

  get deleted(): boolean {
    return (this.bits & DELETED) !== 0;
  }
  get datatype(): number {
    return this.bits & DATATYPE;
  }
  get expired(): boolean {
    return (this.bits & EXPIRED) !== 0;
  }
  /** Left the history (or purged): still in the log array until it is next compacted. */
  get dropped(): boolean {
    return (this.bits & DROPPED) !== 0;
  }
  /** A prepare (in flight or completed). */
  get isPrepare(): boolean {
    return (this.bits & PREPARE) !== 0;
  }
  /** An abort marker. */
  get isAbort(): boolean {
    return (this.bits & ABORT) !== 0;
  }
  /** A commit. */
  get isCommit(): boolean {
    return (this.bits & COMMIT) !== 0;
  }
  /** The version's sync role, if any. */
  get sync(): SyncRole | undefined {
    const bits = this.bits;
    if ((bits & SYNC) === 0) return undefined;
    if (bits & PREPARE) return { kind: 'prepare', level: ((bits & LEVEL) >>> LEVEL_SHIFT) as 1 | 2 | 3 };
    const preparedSeqno = BigInt(this.preparedSeqno);
    return bits & COMMIT ? { kind: 'commit', preparedSeqno } : { kind: 'abort', preparedSeqno };
  }
  /** The prepared seqno of a commit or abort (0 for other versions). */
  get preparedSeqno(): number {
    if ((this.bits & (COMMIT | ABORT)) === 0) return 0;
    return this.slab.bytes.readDoubleLE(this.at + ENTRY_HEADER_BYTES + this.keyLength + this.valueLength);
  }
  markDropped(): void {
    this.bits |= DROPPED;
  }
  get cas(): bigint {
    return this.slab.words[this.at >>> 3]!;
  }
  get revSeqno(): bigint {
    return this.slab.words[(this.at >>> 3) + 1]!;
  }
  get expiry(): number {
    return this.slab.bytes.readUInt32LE(this.at + 20);
  }
  /** Unix seconds of the deletion; 0 when none was recorded. */
  get deleteTime(): number {
    return this.slab.bytes.readUInt32LE(this.at + 24);
  }
  /** Key and value bytes (what the history bound counts besides the per-version overhead). */
  get payloadLength(): number {
    return this.keyLength + this.valueLength;
  }
  /** A view of the key (shares the slab). */
  key(): Buffer {
    const start = this.at + ENTRY_HEADER_BYTES;
    return this.slab.bytes.subarray(start, start + this.keyLength);
  }

  /** The version as an Item, with views of key and value into the slab. */
  toItem(): Item {
    const slab = this.slab.bytes;
    const words = this.slab.words;
    const at = this.at;
    const keyStart = at + ENTRY_HEADER_BYTES;
    const valueStart = keyStart + this.keyLength;
    const bits = this.bits;
    // one plain literal per shape (a spread would build a slower, larger object for every item)
    const item: Item = {
      key: slab.subarray(keyStart, valueStart),
      value: slab.subarray(valueStart, valueStart + this.valueLength),
      cas: words[at >>> 3]!,
      flags: slab.readUInt32LE(at + 16),
      expiry: slab.readUInt32LE(at + 20),
      revSeqno: words[(at >>> 3) + 1]!,
      bySeqno: BigInt(this.seqno),
      datatype: bits & DATATYPE,
      deleted: (bits & DELETED) !== 0,
    };
    if (bits & EXPIRED) (item as { expired?: boolean }).expired = true;
    if (bits & HAS_DELETE_TIME) (item as { deleteTime?: number }).deleteTime = slab.readUInt32LE(at + 24);
    if (bits & SYNC) (item as { sync?: SyncRole }).sync = this.sync;
    return item;
  }
}
