import type { Compare, KeyValue, LeaseId, TxnOp, WatchEvent } from './types.js';

/**
 * One key's change inside a revision, as the write-ahead log stores it: a put (`value` set) or a delete.
 * Changes are the *resolved* effect of a txn (a `deletePrefix` becomes one delete per key), so replaying
 * them needs no other state than the keys.
 */
export interface Change {
  readonly key: string;
  readonly value?: Uint8Array;
  readonly lease?: LeaseId;
}

const EMPTY = new Uint8Array(0);

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function compareNumber(actual: number, op: '==' | '!=' | '<' | '>', expected: number): boolean {
  switch (op) {
    case '==':
      return actual === expected;
    case '!=':
      return actual !== expected;
    case '<':
      return actual < expected;
    case '>':
      return actual > expected;
  }
}

/** Serialised form of the state, for snapshots (msgpackr). */
export interface StateImage {
  readonly v: 1;
  readonly revision: number;
  readonly compactRevision: number;
  readonly kvs: readonly KeyValue[];
  readonly history: readonly WatchEvent[];
}

/**
 * The embedded store's state machine (etcd's MVCC reduced to what the interface needs): the live keys, the
 * store revision, and the recent history of events that watches replay. Pure and synchronous; durability
 * is the caller's (embedded.ts).
 */
export class KvState {
  revision = 0;
  /** Watches can replay events with a revision above this one. */
  compactRevision = 0;
  private readonly kvs = new Map<string, KeyValue>();
  private history: WatchEvent[] = [];

  constructor(private readonly historyLimit: number) {}

  static fromImage(image: StateImage, historyLimit: number): KvState {
    const state = new KvState(historyLimit);
    state.revision = image.revision;
    state.compactRevision = image.compactRevision;
    for (const kv of image.kvs) state.kvs.set(kv.key, kv);
    state.history = [...image.history];
    return state;
  }

  image(): StateImage {
    return {
      v: 1,
      revision: this.revision,
      compactRevision: this.compactRevision,
      kvs: [...this.kvs.values()],
      history: this.history,
    };
  }

  get(key: string): KeyValue | undefined {
    return this.kvs.get(key);
  }

  range(prefix: string): KeyValue[] {
    const found: KeyValue[] = [];
    for (const kv of this.kvs.values()) if (kv.key.startsWith(prefix)) found.push(kv);
    return found.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Keys attached to `lease`. */
  keysOfLease(lease: LeaseId): string[] {
    const keys: string[] = [];
    for (const kv of this.kvs.values()) if (kv.lease === lease) keys.push(kv.key);
    return keys;
  }

  /** Keys attached to any lease (a previous process's leases are all expired on open). */
  leasedKeys(): string[] {
    const keys: string[] = [];
    for (const kv of this.kvs.values()) if (kv.lease !== undefined) keys.push(kv.key);
    return keys;
  }

  /** etcd's compare: a missing key has revisions and version 0 and fails every value compare, `!=` too. */
  holds(compare: Compare): boolean {
    const kv = this.kvs.get(compare.key);
    if (compare.target === 'value') {
      if (!kv) return false;
      const equal = bytesEqual(kv.value, compare.value);
      return compare.op === '==' ? equal : !equal;
    }
    const actual = kv ? kv[compare.target] : 0;
    return compareNumber(actual, compare.op, compare.revision);
  }

  /** The changes `ops` make, in order; deletes of missing keys are dropped (they change nothing). */
  resolve(ops: readonly TxnOp[]): Change[] {
    const changes: Change[] = [];
    // keys as the txn has left them so far, so a put then delete of one key in one txn resolves right
    const present = new Map<string, boolean>();
    const exists = (key: string) => present.get(key) ?? this.kvs.has(key);
    for (const op of ops) {
      if (op.type === 'put') {
        changes.push(
          op.lease === undefined
            ? { key: op.key, value: op.value }
            : { key: op.key, value: op.value, lease: op.lease },
        );
        present.set(op.key, true);
      } else if (op.type === 'delete') {
        if (exists(op.key)) changes.push({ key: op.key });
        present.set(op.key, false);
      } else {
        const keys = new Set(this.range(op.prefix).map((kv) => kv.key));
        for (const [key, there] of present)
          if (key.startsWith(op.prefix)) there ? keys.add(key) : keys.delete(key);
        for (const key of [...keys].sort()) {
          changes.push({ key });
          present.set(key, false);
        }
      }
    }
    return changes;
  }

  /** Applies the changes of revision `revision` (must be the next one); returns its events. */
  apply(revision: number, changes: readonly Change[]): WatchEvent[] {
    if (revision !== this.revision + 1) {
      throw new RangeError(`revision ${revision} applied after ${this.revision}`);
    }
    this.revision = revision;
    const events: WatchEvent[] = [];
    for (const change of changes) {
      if (change.value !== undefined) {
        const old = this.kvs.get(change.key);
        const kv: KeyValue = {
          key: change.key,
          value: change.value,
          createRevision: old ? old.createRevision : revision,
          modRevision: revision,
          version: old ? old.version + 1 : 1,
          ...(change.lease !== undefined ? { lease: change.lease } : {}),
        };
        this.kvs.set(change.key, kv);
        events.push({ type: 'put', kv });
      } else if (this.kvs.delete(change.key)) {
        events.push({
          type: 'delete',
          kv: { key: change.key, value: EMPTY, createRevision: 0, modRevision: revision, version: 0 },
        });
      }
    }
    this.history.push(...events);
    this.trimHistory();
    return events;
  }

  /** Held events with modRevision in [from, to], in order. */
  eventsBetween(from: number, to: number): WatchEvent[] {
    let lo = 0;
    let hi = this.history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.history[mid]!.kv.modRevision < from) lo = mid + 1;
      else hi = mid;
    }
    const events: WatchEvent[] = [];
    for (let i = lo; i < this.history.length; i++) {
      const event = this.history[i]!;
      if (event.kv.modRevision > to) break;
      events.push(event);
    }
    return events;
  }

  private trimHistory(): void {
    // trimmed in chunks (a quarter of the limit) so a txn does not copy the history each time
    if (this.history.length <= this.historyLimit + (this.historyLimit >> 2)) return;
    // drop whole revisions, oldest first
    let cut = this.history.length - this.historyLimit;
    const lastDropped = this.history[cut - 1]!.kv.modRevision;
    while (cut < this.history.length && this.history[cut]!.kv.modRevision === lastDropped) cut++;
    this.history = this.history.slice(cut);
    this.compactRevision = lastDropped;
  }
}
