import type { Entry } from './entry.js';
import { ENTRY_HEADER_BYTES } from './entry.js';

// A vBucket's key index: the latest entry of each key, found by the key's bytes. An open-addressing
// table (linear probing, backward-shift deletion) of entry references with a parallel array of key
// hashes: about 12 bytes per slot, with no string per key. A Map<string, Entry> costs a string copy
// of every key plus its own table, about 70 bytes per key at short keys (issue 10).

const MIN_CAPACITY = 16;
/** The table grows past this share of its slots in use. */
const MAX_LOAD = 0.75;

/** A hash of `bytes[start, end)` as an int32. */
export type KeyHash = (bytes: Buffer, start: number, end: number) => number;

/** FNV-1a over `bytes[start, end)`, as an int32. */
export function hashBytes(bytes: Buffer, start: number, end: number): number {
  let h = 0x811c9dc5 | 0;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h;
}

/** Whether `entry`'s key is `bytes[start, start + length)`. */
function hasKey(entry: Entry, bytes: Buffer, start: number, length: number): boolean {
  if (entry.keyLength !== length) return false;
  const slab = entry.slab.bytes;
  const at = entry.at + ENTRY_HEADER_BYTES;
  for (let i = 0; i < length; i++) if (slab[at + i] !== bytes[start + i]) return false;
  return true;
}

export class KeyIndex {
  private slots: (Entry | undefined)[] = new Array<Entry | undefined>(MIN_CAPACITY).fill(undefined);
  private hashes = new Int32Array(MIN_CAPACITY);
  private mask = MIN_CAPACITY - 1;
  private count = 0;

  /** `hash` is for tests (a poor one makes long probe runs). */
  constructor(private readonly hash: KeyHash = hashBytes) {}

  get size(): number {
    return this.count;
  }

  /** The entry whose key is `key`. */
  get(key: Buffer): Entry | undefined {
    const hash = this.hash(key, 0, key.length);
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const entry = this.slots[i];
      if (entry === undefined) return undefined;
      if (this.hashes[i] === hash && hasKey(entry, key, 0, key.length)) return entry;
    }
  }

  /** Puts `entry` in for its key; returns the entry it replaced, if any. */
  set(entry: Entry): Entry | undefined {
    const start = entry.at + ENTRY_HEADER_BYTES;
    const hash = this.hash(entry.slab.bytes, start, start + entry.keyLength);
    for (let i = hash & this.mask; ; i = (i + 1) & this.mask) {
      const current = this.slots[i];
      if (current === undefined) {
        this.slots[i] = entry;
        this.hashes[i] = hash;
        if (++this.count > this.slots.length * MAX_LOAD) this.resize(this.slots.length * 2);
        return undefined;
      }
      if (this.hashes[i] === hash && hasKey(current, entry.slab.bytes, start, entry.keyLength)) {
        this.slots[i] = entry;
        return current;
      }
    }
  }

  /** Removes the entry for `entry`'s key (whichever entry it is); returns whether there was one. */
  delete(entry: Entry): boolean {
    const start = entry.at + ENTRY_HEADER_BYTES;
    const hash = this.hash(entry.slab.bytes, start, start + entry.keyLength);
    let i = hash & this.mask;
    for (; ; i = (i + 1) & this.mask) {
      const current = this.slots[i];
      if (current === undefined) return false;
      if (this.hashes[i] === hash && hasKey(current, entry.slab.bytes, start, entry.keyLength)) break;
    }
    // backward shift: move later entries of the probe run into the hole, unless their home slot is
    // cyclically in (hole, j] (they would then be before their home)
    let hole = i;
    for (let j = (i + 1) & this.mask; ; j = (j + 1) & this.mask) {
      const moving = this.slots[j];
      if (moving === undefined) break;
      const home = this.hashes[j]! & this.mask;
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      this.slots[hole] = moving;
      this.hashes[hole] = this.hashes[j]!;
      hole = j;
    }
    this.slots[hole] = undefined;
    this.count--;
    if (this.count < this.slots.length / 8 && this.slots.length > MIN_CAPACITY)
      this.resize(this.slots.length / 2);
    return true;
  }

  clear(): void {
    this.slots = new Array<Entry | undefined>(MIN_CAPACITY).fill(undefined);
    this.hashes = new Int32Array(MIN_CAPACITY);
    this.mask = MIN_CAPACITY - 1;
    this.count = 0;
  }

  *values(): Generator<Entry> {
    for (const entry of this.slots) if (entry !== undefined) yield entry;
  }

  private resize(capacity: number): void {
    const slots = this.slots;
    const hashes = this.hashes;
    this.slots = new Array<Entry | undefined>(capacity).fill(undefined);
    this.hashes = new Int32Array(capacity);
    this.mask = capacity - 1;
    for (let s = 0; s < slots.length; s++) {
      const entry = slots[s];
      if (entry === undefined) continue;
      const hash = hashes[s]!;
      let i = hash & this.mask;
      while (this.slots[i] !== undefined) i = (i + 1) & this.mask;
      this.slots[i] = entry;
      this.hashes[i] = hash;
    }
  }
}
