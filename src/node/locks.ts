import { randomInt } from 'node:crypto';

/** kv_engine's default and largest lock time (GET_LOCKED with 0 or more than the maximum gets the default). */
export const DEFAULT_LOCK_SECONDS = 15;
export const MAX_LOCK_SECONDS = 30;

/** CAS a locked document shows to a plain GET (kv_engine: -1). */
export const LOCKED_CAS = 0xffff_ffff_ffff_ffffn;

interface Lock {
  cas: bigint;
  until: number;
}

/** What a mutation of a key may do under the key's lock. */
export type LockCheck =
  /** Not locked: the request's own CAS applies. */
  | { locked: false }
  /** Locked and the request carries the lock's CAS: the mutation goes ahead and releases the lock. */
  | { locked: true; holder: true }
  /** Locked by someone else (or without the lock's CAS): refuse with Locked. */
  | { locked: true; holder: false };

/**
 * Document locks of GET_LOCKED / UNLOCK_KEY (kv_engine "getl"): in memory on the active copy only,
 * as in Couchbase (a lock is not replicated; it ends at its time, at an unlock, or at a mutation that
 * carries the lock's CAS). One table per node, keyed by vBucket and key.
 */
export class LockTable {
  private readonly locks = new Map<string, Lock>();
  /** Expired locks are dropped when read, and all at once when the table reaches this size. */
  private sweepAt = 1024;

  constructor(private readonly now: () => number) {}

  private id(vb: number, key: Buffer): string {
    return `${vb}:${key.toString('latin1')}`;
  }

  private live(vb: number, key: Buffer): Lock | undefined {
    // the KV hot path: no lock anywhere (the common case) costs no key string
    if (this.locks.size === 0) return undefined;
    const id = this.id(vb, key);
    const lock = this.locks.get(id);
    if (lock && lock.until <= this.now()) {
      this.locks.delete(id);
      return undefined;
    }
    return lock;
  }

  isLocked(vb: number, key: Buffer): boolean {
    return this.live(vb, key) !== undefined;
  }

  /** Locks `key` for `seconds` (0 or over the maximum: the default); returns the lock's CAS. */
  lock(vb: number, key: Buffer, itemCas: bigint, seconds: number): bigint {
    const time = seconds === 0 || seconds > MAX_LOCK_SECONDS ? DEFAULT_LOCK_SECONDS : seconds;
    // a CAS the document never had: the item's plus a random step (never 0, never LOCKED_CAS)
    let cas = (itemCas + BigInt(randomInt(1, 2 ** 30))) & 0xffff_ffff_ffff_ffffn;
    if (cas === 0n || cas === LOCKED_CAS) cas = 1n;
    this.locks.set(this.id(vb, key), { cas, until: this.now() + time * 1000 });
    // a lock nobody reads again would stay: sweep the expired ones as the table grows (amortised O(1))
    if (this.locks.size >= this.sweepAt) {
      const now = this.now();
      for (const [id, lock] of this.locks) if (lock.until <= now) this.locks.delete(id);
      this.sweepAt = Math.max(1024, this.locks.size * 2);
    }
    return cas;
  }

  /** Locks held or expired and not yet dropped. */
  get size(): number {
    return this.locks.size;
  }

  check(vb: number, key: Buffer, requestCas: bigint): LockCheck {
    const lock = this.live(vb, key);
    if (!lock) return { locked: false };
    return { locked: true, holder: requestCas === lock.cas };
  }

  unlock(vb: number, key: Buffer): void {
    this.locks.delete(this.id(vb, key));
  }

  /** Drops the locks of vBucket `vb` (it stopped being active here). */
  dropVBucket(vb: number): void {
    const prefix = `${vb}:`;
    for (const id of this.locks.keys()) if (id.startsWith(prefix)) this.locks.delete(id);
  }
}
