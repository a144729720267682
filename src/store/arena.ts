/**
 * A slab the store keeps versions in: its bytes, and the same memory as 64-bit words (an entry's CAS
 * and revseqno are read as words: a bigint straight from the slab, not one assembled from bytes).
 */
export interface Slab {
  readonly bytes: Buffer;
  readonly words: BigUint64Array;
}

/** Reservations start on 8-byte boundaries (the words of a slab). */
const ALIGN = 8;

function newSlab(n: number): Slab {
  const bytes = Buffer.allocUnsafeSlow(n);
  return { bytes, words: new BigUint64Array(bytes.buffer, bytes.byteOffset, Math.floor(n / ALIGN)) };
}

const NONE = newSlab(0);

/**
 * Space for the versions the store keeps (header, key and value; see entry.ts), carved from slabs of
 * their own. Node's shared Buffer pool would put them beside short-lived buffers (frames, records)
 * and a kept slice pins its whole pool slab; in slabs that hold only kept data, memory follows the
 * live data more closely.
 */
export class ByteArena {
  private slab: Slab = NONE;
  private used = 0;
  private lastSlab: Slab = NONE;

  constructor(
    private readonly slabBytes = 8 * 1024,
    /** Larger reservations get their own allocation. */
    private readonly largest = 1024,
  ) {}

  /**
   * Reserves `n` bytes at an 8-byte boundary and returns their offset in `last` (the slab they are
   * in, until the next call). The bytes are not zeroed: the caller writes all of them.
   */
  reserve(n: number): number {
    if (n > this.largest) {
      this.lastSlab = newSlab(n);
      return 0;
    }
    const at = Math.ceil(this.used / ALIGN) * ALIGN;
    if (at + n > this.slab.bytes.length) {
      this.slab = newSlab(this.slabBytes);
      this.used = n;
      this.lastSlab = this.slab;
      return 0;
    }
    this.lastSlab = this.slab;
    this.used = at + n;
    return at;
  }

  /** The slab of the latest reservation. */
  get last(): Slab {
    return this.lastSlab;
  }
}
