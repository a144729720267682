/**
 * Hybrid logical clock for CAS values, like kv_engine's: nanoseconds of wall time, and when two writes
 * land in the same nanosecond (or the clock goes back) one more than the last. Strictly increasing.
 */
export class CasClock {
  private last = 0n;
  constructor(private readonly nowMs: () => number = Date.now) {}

  next(): bigint {
    const wall = BigInt(Math.floor(this.nowMs())) * 1_000_000n;
    this.last = wall > this.last ? wall : this.last + 1n;
    return this.last;
  }

  /** Keeps the clock ahead of CAS values that arrive by replication or recovery. */
  observe(cas: bigint): void {
    if (cas > this.last) this.last = cas;
  }
}
