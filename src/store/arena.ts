/**
 * Copies of keys and values the store keeps, carved from slabs of their own. Node's shared Buffer
 * pool would put them beside short-lived buffers (frames, records) and a kept slice pins its whole
 * pool slab; in slabs that hold only kept data, memory follows the live data more closely.
 */
export class ByteArena {
  private slab: Buffer = Buffer.alloc(0);
  private used = 0;

  constructor(
    private readonly slabBytes = 8 * 1024,
    /** Larger copies get their own allocation. */
    private readonly largest = 1024,
  ) {}

  copy(source: Buffer): Buffer {
    const n = source.length;
    if (n === 0) return EMPTY;
    if (n > this.largest) return Buffer.from(source);
    if (this.used + n > this.slab.length) {
      this.slab = Buffer.allocUnsafeSlow(this.slabBytes);
      this.used = 0;
    }
    const out = this.slab.subarray(this.used, this.used + n);
    source.copy(out);
    this.used += n;
    return out;
  }
}

const EMPTY = Buffer.alloc(0);
