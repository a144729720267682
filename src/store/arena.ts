/**
 * Space for the versions the store keeps (header, key and value; see entry.ts), carved from slabs of
 * their own. Node's shared Buffer pool would put them beside short-lived buffers (frames, records)
 * and a kept slice pins its whole pool slab; in slabs that hold only kept data, memory follows the
 * live data more closely.
 */
export class ByteArena {
  private slab: Buffer = Buffer.alloc(0);
  private used = 0;
  private lastSlab: Buffer = this.slab;

  constructor(
    private readonly slabBytes = 8 * 1024,
    /** Larger reservations get their own allocation. */
    private readonly largest = 1024,
  ) {}

  /**
   * Reserves `n` bytes and returns their offset in `last` (the slab they are in, until the next
   * call). The bytes are not zeroed: the caller writes all of them.
   */
  reserve(n: number): number {
    if (n > this.largest) {
      this.lastSlab = Buffer.allocUnsafeSlow(n);
      return 0;
    }
    if (this.used + n > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    this.lastSlab = this.slab;
    const at = this.used;
    this.used += n;
    return at;
  }

  /** The slab of the latest reservation. */
  get last(): Buffer {
    return this.lastSlab;
  }
}
