import {
  type DurabilityLevel,
  type FailoverEntry,
  VBucketState,
  vbucketStateName,
} from '../protocol/index.js';
import { ByteArena } from './arena.js';
import { CasClock } from './cas.js';
import { Deque } from './deque.js';
import { Entry, type EntryFields } from './entry.js';
import { StoreError } from './errors.js';
import { KeyIndex } from './key-index.js';
import type {
  ArithmeticRequest,
  Item,
  KvResult,
  MutateRequest,
  SnapshotRange,
  StoreClock,
  StoreRandom,
  SyncRole,
  VBucketMeta,
} from './types.js';

/** A durable delete (VBucket.prepare). */
export interface DeleteRequest {
  op: 'delete';
  key: Buffer;
  cas?: bigint;
}

/** Most entries a failover log keeps (kv_engine's default). */
export const MAX_FAILOVER_ENTRIES = 25;
/** memcached: expirations up to 30 days are relative seconds, larger ones absolute unix time. */
const RELATIVE_EXPIRY_LIMIT = 60 * 60 * 24 * 30;
/** memcached: an arithmetic expiration of 0xffffffff means "do not create". */
const NO_CREATE = 0xffff_ffff;

/** Where a vBucket reports what must be made durable (the durable store implements it). */
export interface VBucketSink {
  /** A version was appended: `entry` holds it (its bytes in the arena), `item` is the same as an Item. */
  appended(vb: VBucket, item: Item, entry: Entry): void;
  /**
   * A replica received a snapshot marker (`range`), or its data became its own (`undefined`): written
   * into the log in order with the items, so a crash never leaves the range and the items disagreeing.
   */
  snapshotMarked(vb: VBucket, range: SnapshotRange | undefined): void;
  /** The log changed other than by appends (rollback, compaction): rewrite it whole. */
  rewritten(vb: VBucket): void;
  /**
   * The metadata (state, failover log, purge seqno) changed. Resolves once a metadata write that
   * includes this change is on disk; rejects if it cannot be written (after the writer's retries).
   */
  metaChanged(vb: VBucket): Promise<void>;
}

/** Default bound of one vBucket's recent history (superseded versions kept for streams and rollback). */
export const DEFAULT_HISTORY_BYTES = 16 * 1024 * 1024;
/**
 * What one version costs besides its key and value: its entry object and slab header (see entry.ts),
 * its log and key index slots, its slab's alignment and views, and the heap's slack (measured: about
 * 230 bytes of RSS over key and value at 1 M versions of 256-byte values, `dcpx bench memory`).
 */
export const VERSION_OVERHEAD_BYTES = 230;

export interface VBucketOptions {
  /**
   * Bytes of superseded versions kept for in-memory streams and rollback (kv_engine's checkpoint
   * memory). Older ones are dropped: streams from before the history get a disk snapshot of the latest
   * versions, rollbacks below it go to 0.
   */
  historyBytes?: number;
}

/**
 * A stream reading a snapshot: while it holds `upTo`, no version that is the latest as of `upTo`
 * leaves the history, so the snapshot it sends stays consistent at its end.
 */
export interface SnapshotReader {
  /** Sending (from, upTo]: its versions stay, and so do its tombstones (no purge above `from`). */
  hold(upTo: bigint, from: bigint): void;
  release(): void;
  close(): void;
}

function versionBytes(entry: Entry): number {
  return entry.payloadLength + VERSION_OVERHEAD_BYTES;
}

export type ItemListener = (item: Item) => void;
export type PersistListener = (seqno: bigint) => void;
export type StateListener = (state: VBucketState, previous: VBucketState) => void;

/**
 * One vBucket: state, seqno-ordered log of versions, a key index of the latest version of each key
 * (tombstones included), failover log and purge seqno. Synchronous and in memory; durability is the
 * sink's job.
 *
 * Memory follows the live data: the latest version of each key stays; superseded versions stay only
 * while they fit in a bounded recent history (`historyBytes`), oldest-superseded first out. The seqno
 * below which versions may be gone is the history start (`historyStart`): a rollback below it goes to
 * 0 (as below kv_engine's purge seqno, dcp-spec §7), and a stream behind it gets the latest versions
 * as a disk snapshot (dcp-spec §4.7), as kv_engine backfills a dropped cursor.
 */
export class VBucket {
  private log: Entry[] = [];
  /** Versions in `log` marked dropped (the array is compacted when they are half of it). */
  private droppedInLog = 0;
  private readonly index = new KeyIndex();
  /** Superseded versions in the history, in the order they were superseded. */
  private readonly superseded = new Deque<Entry>();
  /** Bytes of the history: `superseded` and `pinned`. */
  private historyBytesValue = 0;
  /**
   * Versions a reader's snapshot still has to send, taken out of `superseded` when the history went over
   * its bound (see trimHistory); at most one per key and reader, dropped once no reader needs them.
   */
  private pinned: Entry[] = [];
  private pinnedBytes = 0;
  private itemBytesValue = 0;
  /** Latest versions that are not tombstones (kept as they change: metrics read it at every scrape). */
  private live = 0;
  private readonly historyLimit: number;
  /** Where versions are kept (see ByteArena, Entry). */
  private readonly arena = new ByteArena();
  /** Held snapshots (from, floor], as numbers like entry seqnos. */
  private readonly readers = new Set<{ floor: number; from: number }>();
  private high = 0n;
  /** The state the vBucket acts on (serves KV as active, streams as active or replica). */
  private stateValue: VBucketState;
  /** The state written into the metadata: the latest one asked for (may run ahead of `stateValue`). */
  private recordedState: VBucketState;
  /** Durability of the latest state change; each change bumps the generation. */
  private stateWrite: Promise<void> = Promise.resolve();
  private stateGeneration = 0;
  /** The latest state change could not be written: asking for that state again writes it again. */
  private stateWriteFailed = false;
  private failover: FailoverEntry[];
  private purge = 0n;
  /** Superseded versions at or below this seqno may have been dropped: rollback below it goes to 0. */
  private compacted = 0n;
  /** Highest revision seqno of a purged tombstone (see VBucketMeta.maxDeletedRevSeqno). */
  private maxDeletedRev = 0n;
  private snapshotRange: SnapshotRange | undefined;
  private readonly itemListeners = new Set<ItemListener>();
  private readonly stateListeners = new Set<StateListener>();
  /**
   * Sync writes (DESIGN.md "Part 3"): the prepares in flight, by key (at most one each; never in
   * `index`, so reads see the committed value) and by seqno. A completed prepare leaves both and joins
   * the history (superseded by its commit or abort); an abort is a marker kept like a tombstone.
   */
  private readonly prepared = new KeyIndex();
  private readonly preparedBySeqno = new Map<number, Entry>();
  private highPrepared = 0;
  private highCompleted = 0;
  /** Highest seqno on disk (durable mode; memory mode reads `high`). */
  private persisted = 0n;
  private readonly persistListeners = new Set<PersistListener>();
  sink: VBucketSink | undefined;

  constructor(
    readonly id: number,
    meta: Partial<VBucketMeta> = {},
    private readonly clock: StoreClock = { now: Date.now },
    private readonly random: StoreRandom = defaultRandom,
    private readonly cas: CasClock = new CasClock(() => clock.now()),
    options: VBucketOptions = {},
  ) {
    this.historyLimit = options.historyBytes ?? DEFAULT_HISTORY_BYTES;
    this.stateValue = meta.state ?? VBucketState.Dead;
    this.recordedState = this.stateValue;
    this.failover = meta.failoverLog ? [...meta.failoverLog] : [{ vbuuid: random.vbuuid(), seqno: 0n }];
    this.purge = meta.purgeSeqno ?? 0n;
    this.compacted = meta.compactedSeqno ?? this.purge;
    this.maxDeletedRev = meta.maxDeletedRevSeqno ?? 0n;
    this.snapshotRange = meta.snapshot;
  }

  get state(): VBucketState {
    return this.stateValue;
  }
  get highSeqno(): bigint {
    return this.high;
  }
  get purgeSeqno(): bigint {
    return this.purge;
  }
  /** Newest first (dcp-spec §7). */
  get failoverLog(): readonly FailoverEntry[] {
    return this.failover;
  }
  get uuid(): bigint {
    return this.failover[0]!.vbuuid;
  }
  /** Number of live (not deleted) documents. */
  get liveCount(): number {
    return this.live;
  }
  /** Number of keys with a latest version (tombstones included): the records a compacted file holds. */
  get latestCount(): number {
    return this.index.size;
  }
  /** Number of versions held (latest ones and the history). */
  get logLength(): number {
    return this.log.length - this.droppedInLog;
  }
  /** Seqno at or below which superseded versions may be gone (a rollback below it goes to 0). */
  get historyStart(): bigint {
    return this.compacted;
  }
  /** Estimated bytes of the superseded versions the history holds. */
  get historyBytes(): number {
    return this.historyBytesValue;
  }
  /** Estimated bytes of the latest version of each key (tombstones included). */
  get itemBytes(): number {
    return this.itemBytesValue;
  }

  /** Bytes of the keys and values of every version held (what a compacted file holds, less framing). */
  get payloadBytes(): number {
    return this.itemBytesValue + this.historyBytesValue - this.logLength * VERSION_OVERHEAD_BYTES;
  }

  /** A stream's hold on the versions of the snapshot it is sending (see SnapshotReader). */
  openReader(): SnapshotReader {
    const reader = { floor: 0, from: 0 };
    return {
      hold: (upTo, from) => {
        reader.floor = Number(upTo);
        reader.from = Number(from);
        this.readers.add(reader);
      },
      release: () => {
        if (this.readers.delete(reader)) this.unpin();
      },
      close: () => {
        if (this.readers.delete(reader)) this.unpin();
      },
    };
  }
  meta(): VBucketMeta {
    return {
      state: this.recordedState,
      failoverLog: [...this.failover],
      purgeSeqno: this.purge,
      compactedSeqno: this.compacted,
      maxDeletedRevSeqno: this.maxDeletedRev,
    };
  }

  onItem(listener: ItemListener): () => void {
    this.itemListeners.add(listener);
    return () => this.itemListeners.delete(listener);
  }
  /**
   * Told the seqno persisted so far as it rises: in memory mode at every append (persisted = high at
   * once), in durable mode after each fsync that covers new appends (persist-level durability).
   */
  onPersisted(listener: PersistListener): () => void {
    this.persistListeners.add(listener);
    return () => this.persistListeners.delete(listener);
  }

  /** Highest seqno on disk (the high seqno at once when the vBucket is in memory only). */
  get persistedSeqno(): bigint {
    return this.sink ? this.persisted : this.high;
  }

  /** The durable storage made everything up to `seqno` durable. */
  markPersisted(seqno: bigint): void {
    const upTo = seqno > this.high ? this.high : seqno;
    if (upTo <= this.persisted) return;
    this.persisted = upTo;
    for (const listener of this.persistListeners) listener(upTo);
  }

  /** Highest prepare seqno the vBucket holds (kv_engine's high prepared seqno of the log). */
  get highPreparedSeqno(): bigint {
    return BigInt(this.highPrepared);
  }
  /** Highest prepared seqno committed or aborted. */
  get highCompletedSeqno(): bigint {
    return BigInt(this.highCompleted);
  }
  /** The prepares in flight, in seqno order. */
  inFlightPrepares(): Item[] {
    return [...this.preparedBySeqno.values()].sort((a, b) => a.seqno - b.seqno).map((e) => e.toItem());
  }
  /** The prepare of `key` in flight, if any. */
  preparedFor(key: Buffer): Item | undefined {
    if (this.preparedBySeqno.size === 0) return undefined;
    return this.prepared.get(key)?.toItem();
  }

  /** Restores the high prepared/completed seqnos a durable file was written with (no sink). */
  restoreSyncSeqnos(highPrepared: bigint, highCompleted: bigint): void {
    if (Number(highPrepared) > this.highPrepared) this.highPrepared = Number(highPrepared);
    if (Number(highCompleted) > this.highCompleted) this.highCompleted = Number(highCompleted);
  }

  onState(listener: StateListener): () => void {
    this.stateListeners.add(listener);
    return () => this.stateListeners.delete(listener);
  }

  /**
   * Changes the state; the one way states change. Resolves once the new state is durable (at once in
   * memory mode); only then may a caller acknowledge it or act on it (DESIGN.md invariant 6).
   *
   * A change that gives up the active state (active → anything) acts at once and is written after:
   * the vBucket stops serving before the disk knows, and a crash in between comes back active with
   * nothing acknowledged as dead. A change to active is written first and acts only once it is on
   * disk: no write is acknowledged as active on a state a crash would lose. Becoming active starts a
   * new history branch: a new random vbuuid at the current high seqno heads the failover log
   * (dcp-spec §7). Asking for the state last asked for returns that change's promise.
   */
  setState(state: VBucketState): Promise<void> {
    if (state === this.recordedState && !this.stateWriteFailed) return this.stateWrite;
    const generation = ++this.stateGeneration;
    this.stateWriteFailed = false;
    const becomesActive = state === VBucketState.Active && this.stateValue !== VBucketState.Active;
    this.recordedState = state;
    const branch = becomesActive ? this.pushFailoverEntry() : undefined;
    if (!becomesActive || !this.sink) this.act(state);
    const written = this.sink ? this.sink.metaChanged(this) : Promise.resolve();
    const done = becomesActive
      ? written.then(
          () => {
            if (generation === this.stateGeneration) this.act(state);
          },
          (error: unknown) => {
            // not on disk: the vBucket stays as it acts now, and the next write records that; the
            // history branch of an active state that never was goes too
            if (generation === this.stateGeneration) {
              this.recordedState = this.stateValue;
              if (this.failover[0] === branch) this.failover.shift();
            }
            throw error;
          },
        )
      : written;
    // callers that do not wait must not turn a failed write into a crash
    done.catch(() => {
      if (generation === this.stateGeneration) this.stateWriteFailed = true;
    });
    this.stateWrite = done;
    return done;
  }

  /** Durability of the latest state change (resolved when none is in flight). */
  stateDurable(): Promise<void> {
    return this.stateWrite;
  }

  private act(state: VBucketState): void {
    const previous = this.stateValue;
    if (state === previous) return;
    this.stateValue = state;
    for (const listener of this.stateListeners) listener(state, previous);
  }

  /** A new failover entry at the high seqno (on becoming active, or after an unclean restart). */
  addFailoverEntry(): void {
    this.pushFailoverEntry();
    void this.sink?.metaChanged(this);
  }

  private pushFailoverEntry(): FailoverEntry {
    let vbuuid = this.random.vbuuid();
    while (this.failover.some((e) => e.vbuuid === vbuuid)) vbuuid = this.random.vbuuid();
    const entry = { vbuuid, seqno: this.high };
    this.failover.unshift(entry);
    if (this.failover.length > MAX_FAILOVER_ENTRIES) this.failover.length = MAX_FAILOVER_ENTRIES;
    return entry;
  }

  /** Replaces the failover log with the producer's (a consumer does this on stream-req success, §7). */
  adoptFailoverLog(entries: readonly FailoverEntry[]): void {
    if (entries.length === 0)
      throw new StoreError('DCPX_ERR_STORE_BAD_ITEM', `vb ${this.id}: empty failover log`);
    this.failover = entries.slice(0, MAX_FAILOVER_ENTRIES).map((e) => ({ ...e }));
    void this.sink?.metaChanged(this);
  }

  /**
   * The snapshot the vBucket's data belongs to (dcp-spec §4.4: the snapshot range of a STREAM_REQ):
   * the last one a replica received while it holds part of it, else [high, high]: its data is its
   * own, or the last marker came before any of its items (the snapshot before it is complete).
   */
  get snapshot(): SnapshotRange {
    const range = this.snapshotRange;
    if (!range || this.high < range.start || this.high > range.end)
      return { start: this.high, end: this.high };
    return { ...range };
  }

  /** The last snapshot marker received, as recorded (undefined once the data is its own). */
  get markedSnapshot(): SnapshotRange | undefined {
    return this.snapshotRange ? { ...this.snapshotRange } : undefined;
  }

  /** A replica received a snapshot marker. */
  setSnapshot(range: SnapshotRange): void {
    this.snapshotRange = { ...range };
    this.sink?.snapshotMarked(this, this.snapshotRange);
  }

  /** Restores the history start and purge seqno a durable file was written with (no sink). */
  restoreHistoryStart(seqno: bigint, purgeSeqno: bigint, maxDeletedRevSeqno = 0n): void {
    if (seqno > this.compacted) this.compacted = seqno;
    if (purgeSeqno > this.purge) this.purge = purgeSeqno;
    if (maxDeletedRevSeqno > this.maxDeletedRev) this.maxDeletedRev = maxDeletedRevSeqno;
  }

  /** Highest revision seqno of a purged tombstone (a re-created key starts above it). */
  get maxDeletedRevSeqno(): bigint {
    return this.maxDeletedRev;
  }

  /** Restores the last snapshot marker read back from durable storage (no sink). */
  restoreSnapshot(range: SnapshotRange | undefined): void {
    this.snapshotRange = range ? { ...range } : undefined;
  }

  /** The latest live version of `key`, or undefined (missing, deleted or expired). */
  get(key: Buffer): Item | undefined {
    return this.liveEntry(key)?.toItem();
  }

  /** The latest live entry of `key` (an expired one is deleted here, on an active vBucket). */
  private liveEntry(key: Buffer): Entry | undefined {
    const entry = this.index.get(key);
    if (!entry || entry.deleted) return undefined;
    if (this.isExpired(entry.expiry)) {
      // a key with a prepare in flight expires with the prepare's outcome, not under it
      if (this.stateValue === VBucketState.Active && !this.hasPrepare(key)) this.expire(entry);
      return undefined;
    }
    return entry;
  }

  /** The latest version of `key`, tombstones included (for conflict checks and tests). */
  getVersion(key: Buffer): Item | undefined {
    return this.index.get(key)?.toItem();
  }

  /** set / add / replace / append / prepend with memcached's semantics and CAS check. */
  mutate(request: MutateRequest): KvResult {
    if (this.hasPrepare(request.key)) return { status: 'sync_write_in_progress' };
    const planned = this.planMutation(request);
    if ('status' in planned) return planned;
    const { value, flags, expiry, datatype } = planned;
    return { status: 'ok', item: this.write(request.key, value, flags, expiry, datatype, false) };
  }

  /**
   * A sync write (DESIGN.md "Part 3"): the prepare of a mutation or deletion, checked like `mutate` /
   * `remove` against the committed value, appended at the next seqno but kept out of the key index
   * until `commit`. SYNC_WRITE_IN_PROGRESS when the key has a prepare in flight.
   */
  prepare(request: MutateRequest | DeleteRequest, level: DurabilityLevel): KvResult {
    if (this.hasPrepare(request.key)) return { status: 'sync_write_in_progress' };
    const sync: SyncRole = { kind: 'prepare', level };
    if (request.op === 'delete') {
      const current = this.liveEntry(request.key);
      if (!current) return { status: 'not_found' };
      if (request.cas && request.cas !== 0n && current.cas !== request.cas) return { status: 'exists' };
      return { status: 'ok', item: this.write(request.key, EMPTY, 0, 0, 0, true, sync) };
    }
    const planned = this.planMutation(request);
    if ('status' in planned) return planned;
    const { value, flags, expiry, datatype } = planned;
    return { status: 'ok', item: this.write(request.key, value, flags, expiry, datatype, false, sync) };
  }

  /**
   * Commits the prepare in flight at `preparedSeqno`: its value becomes the key's committed version at
   * the next seqno (same CAS and revseqno as the prepare). Throws when it is not a prepare in flight.
   */
  commit(preparedSeqno: bigint): Item {
    const prepare = this.inFlight(preparedSeqno, 'commit');
    this.ownWrite();
    const item = prepare.toItem();
    return this.append(item.key, item.value, this.high + 1n, {
      cas: item.cas,
      revSeqno: item.revSeqno,
      flags: item.flags,
      expiry: item.expiry,
      datatype: item.datatype,
      deleted: item.deleted,
      deleteTime: item.deleted ? Math.floor(this.clock.now() / 1000) : undefined,
      sync: { kind: 'commit', preparedSeqno },
    });
  }

  /** Aborts the prepare in flight at `preparedSeqno` (a marker at the next seqno). */
  abort(preparedSeqno: bigint): Item {
    const prepare = this.inFlight(preparedSeqno, 'abort');
    this.ownWrite();
    return this.append(prepare.key(), EMPTY, this.high + 1n, this.abortFields(prepare, preparedSeqno));
  }

  private abortFields(prepare: Entry | undefined, preparedSeqno: bigint): EntryFields {
    return {
      cas: prepare?.cas ?? 0n,
      revSeqno: prepare?.revSeqno ?? 0n,
      flags: 0,
      expiry: 0,
      datatype: 0,
      deleted: true,
      deleteTime: Math.floor(this.clock.now() / 1000),
      sync: { kind: 'abort', preparedSeqno },
    };
  }

  private inFlight(preparedSeqno: bigint, what: string): Entry {
    const prepare = this.preparedBySeqno.get(Number(preparedSeqno));
    if (!prepare) {
      throw new StoreError(
        'DCPX_ERR_STORE_NO_PREPARE',
        `vb ${this.id}: ${what} of seqno ${preparedSeqno}, which is not a prepare in flight`,
      );
    }
    return prepare;
  }

  private hasPrepare(key: Buffer): boolean {
    return this.preparedBySeqno.size !== 0 && this.prepared.get(key) !== undefined;
  }

  /** What a mutation would write (memcached's checks against the committed value), or why not. */
  private planMutation(
    request: MutateRequest,
  ): KvResult | { value: Buffer; flags: number; expiry: number; datatype: number } {
    // the entry, not an Item: a SET only looks at whether there is one and at its CAS
    const current = this.liveEntry(request.key);
    const cas = request.cas ?? 0n;
    switch (request.op) {
      case 'add':
        if (current) return { status: 'exists' };
        break;
      case 'replace':
      case 'append':
      case 'prepend':
        if (!current) return { status: 'not_found' };
        break;
      case 'set':
        break;
    }
    if (cas !== 0n) {
      if (!current) return { status: 'not_found' };
      if (current.cas !== cas) return { status: 'exists' };
    }
    let value = request.value;
    let flags = request.flags ?? 0;
    let expiry = this.absoluteExpiry(request.expiration ?? 0);
    let datatype = request.datatype ?? 0;
    if (request.op === 'append' || request.op === 'prepend') {
      const old = current!.toItem();
      value = request.op === 'append' ? Buffer.concat([old.value, value]) : Buffer.concat([value, old.value]);
      flags = old.flags;
      expiry = old.expiry;
      datatype = old.datatype;
    }
    return { value, flags, expiry, datatype };
  }

  /** incr / decr with memcached's semantics (decr stops at 0, incr wraps at 2^64). */
  arithmetic(request: ArithmeticRequest): KvResult {
    if (this.hasPrepare(request.key)) return { status: 'sync_write_in_progress' };
    const current = this.get(request.key);
    if (request.cas && request.cas !== 0n) {
      if (!current) return { status: 'not_found' };
      if (current.cas !== request.cas) return { status: 'exists' };
    }
    let next: bigint;
    let flags = 0;
    let expiry: number;
    if (!current) {
      if (request.expiration === NO_CREATE) return { status: 'not_found' };
      next = request.initial;
      expiry = this.absoluteExpiry(request.expiration);
    } else {
      const text = current.value.toString('latin1');
      if (!/^\d{1,20}$/.test(text) || BigInt(text) > 0xffff_ffff_ffff_ffffn) return { status: 'bad_delta' };
      const old = BigInt(text);
      next = request.incr
        ? (old + request.delta) & 0xffff_ffff_ffff_ffffn
        : old > request.delta
          ? old - request.delta
          : 0n;
      flags = current.flags;
      expiry = current.expiry;
    }
    const item = this.write(request.key, Buffer.from(next.toString(), 'latin1'), flags, expiry, 0, false);
    return { status: 'ok', item };
  }

  /** Deletes `key` (a tombstone joins the log). */
  remove(key: Buffer, cas = 0n): KvResult {
    if (this.hasPrepare(key)) return { status: 'sync_write_in_progress' };
    const current = this.liveEntry(key);
    if (!current) return { status: 'not_found' };
    if (cas !== 0n && current.cas !== cas) return { status: 'exists' };
    return { status: 'ok', item: this.write(key, EMPTY, 0, 0, 0, true) };
  }

  /** Deletes every live document (memcached FLUSH), as tombstones so replicas follow. */
  flush(): number {
    let n = 0;
    for (const entry of [...this.index.values()]) {
      if (entry.deleted) continue;
      this.write(entry.key(), EMPTY, 0, 0, 0, true);
      n++;
    }
    return n;
  }

  /**
   * Applies an item received by replication, keeping the producer's seqno, CAS and revseqno.
   * Its seqno must be above the high seqno (DCP streams are strictly increasing).
   */
  apply(item: Item): void {
    if (item.bySeqno <= this.high) {
      throw new StoreError(
        'DCPX_ERR_STORE_SEQNO',
        `vb ${this.id}: replicated seqno ${item.bySeqno} does not increase past ${this.high}`,
      );
    }
    this.cas.observe(item.cas);
    const sync = item.sync;
    if (sync?.kind === 'commit') {
      // DCP_COMMIT carries no value: the committed version is the prepare's (dcp-spec §4.15)
      const prepare = this.preparedBySeqno.get(Number(sync.preparedSeqno)) ?? this.prepared.get(item.key);
      if (!prepare) {
        throw new StoreError(
          'DCPX_ERR_STORE_NO_PREPARE',
          `vb ${this.id}: replicated commit at ${item.bySeqno} of prepare ${sync.preparedSeqno}, which is not in flight`,
        );
      }
      const p = prepare.toItem();
      this.append(
        p.key,
        p.value,
        item.bySeqno,
        {
          cas: p.cas,
          revSeqno: p.revSeqno,
          flags: p.flags,
          expiry: p.expiry,
          datatype: p.datatype,
          deleted: p.deleted,
          deleteTime: p.deleted ? Math.floor(this.clock.now() / 1000) : undefined,
          sync: { kind: 'commit', preparedSeqno: BigInt(prepare.seqno) },
        },
        false,
        true,
      );
      return;
    }
    if (sync?.kind === 'abort') {
      const prepare = this.preparedBySeqno.get(Number(sync.preparedSeqno)) ?? this.prepared.get(item.key);
      const fields = this.abortFields(prepare, prepare ? BigInt(prepare.seqno) : sync.preparedSeqno);
      this.append(item.key, EMPTY, item.bySeqno, fields, false, true);
      return;
    }
    // a deletion without a delete time (DCP deletion v1, dcp-spec: IncludeDeleteTimes not asked for)
    // ages from its arrival, as kv_engine stamps it: with 0 it would be purged at the next purge pass
    if (item.deleted && !item.deleteTime) {
      this.append(
        item.key,
        item.value,
        item.bySeqno,
        { ...item, deleteTime: Math.floor(this.clock.now() / 1000) },
        false,
        true,
      );
      return;
    }
    this.append(item.key, item.value, item.bySeqno, item, false, true);
  }

  /**
   * Versions with seqno in (after, upTo], in seqno order. With `latestOnly`, versions superseded at or
   * below `upTo` are left out: what a disk backfill of a snapshot ending at `upTo` sends.
   */
  *range(after: bigint, upTo: bigint, latestOnly = false): Generator<Item> {
    const end = Number(upTo);
    for (let i = this.firstAfter(after); i < this.log.length; i++) {
      const entry = this.log[i]!;
      if (entry.seqno > end) return;
      if (entry.dropped) continue;
      if (latestOnly && entry.supersededBy !== 0 && entry.supersededBy <= end) continue;
      yield entry.toItem();
    }
  }

  /**
   * Appends to `out` up to `max` versions with seqno in (after, upTo] (one binary search per batch; the
   * producer's hot path). With `latestOnly`, versions superseded at or below `upTo` are skipped.
   * Returns the last seqno examined (≥ after), so a caller can move past skipped versions.
   */
  readBatch(after: bigint, upTo: bigint, latestOnly: boolean, max: number, out: Item[]): bigint {
    const end = Number(upTo);
    let last = -1;
    for (let i = this.firstAfter(after); i < this.log.length && max > 0; i++) {
      const entry = this.log[i]!;
      if (entry.seqno > end) break;
      last = entry.seqno;
      if (entry.dropped) continue;
      if (latestOnly && entry.supersededBy !== 0 && entry.supersededBy <= end) continue;
      out.push(entry.toItem());
      max--;
    }
    return last < 0 ? after : BigInt(last);
  }

  /**
   * The entries `range(0n, upTo, true)` would yield, as entries (their bytes never change): what a
   * compaction writes, encoded straight from the slabs (durable.ts).
   */
  latestEntries(upTo: bigint): Entry[] {
    const end = Number(upTo);
    const out: Entry[] = [];
    for (const entry of this.log) {
      if (entry.seqno > end) break;
      if (entry.dropped || (entry.supersededBy !== 0 && entry.supersededBy <= end)) continue;
      out.push(entry);
    }
    return out;
  }

  /** How many versions a `range(after, upTo, latestOnly)` would yield (no allocation per item). */
  countRange(after: bigint, upTo: bigint, latestOnly = false): number {
    const end = Number(upTo);
    let n = 0;
    for (let i = this.firstAfter(after); i < this.log.length; i++) {
      const entry = this.log[i]!;
      if (entry.seqno > end) break;
      if (entry.dropped) continue;
      if (latestOnly && entry.supersededBy !== 0 && entry.supersededBy <= end) continue;
      n++;
    }
    return n;
  }

  /**
   * Rolls back to `seqno`: exactly the versions at or below it remain, and each key's latest version is
   * the one it had at that seqno. Below the compaction or purge point history is gone: roll back to 0.
   * Returns the seqno rolled back to.
   */
  rollback(seqno: bigint): bigint {
    const target = seqno < this.compacted ? 0n : seqno;
    if (target >= this.high) return this.high;
    if (target === 0n) {
      this.log = [];
      this.droppedInLog = 0;
      this.index.clear();
      this.live = 0;
      this.superseded.clear();
      this.pinned = [];
      this.pinnedBytes = 0;
      this.historyBytesValue = 0;
      this.itemBytesValue = 0;
      this.purge = 0n;
      this.compacted = 0n;
      this.prepared.clear();
      this.preparedBySeqno.clear();
      this.highPrepared = 0;
      this.highCompleted = 0;
    } else {
      // versions superseded above the target leave the history: they are removed, or latest again
      // (those at or below it: the one version of each key latest at the target, never dropped as
      // the target is at or above the history start). No scan of the log below the target.
      const to = Number(target);
      const latestAgain: Entry[] = [];
      while ((this.superseded.last()?.supersededBy ?? 0) > to) {
        const entry = this.superseded.pop()!;
        this.historyBytesValue -= versionBytes(entry);
        if (entry.seqno <= to) latestAgain.push(entry);
      }
      if (this.pinned.length > 0) {
        this.pinned = this.pinned.filter((entry) => {
          if (entry.supersededBy <= to) return true;
          const bytes = versionBytes(entry);
          this.historyBytesValue -= bytes;
          this.pinnedBytes -= bytes;
          if (entry.seqno <= to) latestAgain.push(entry);
          return false;
        });
      }
      while (this.log.length > 0 && this.log[this.log.length - 1]!.seqno > to) {
        const entry = this.log.pop()!;
        if (entry.dropped) {
          this.droppedInLog--;
          continue;
        }
        if (entry.supersededBy !== 0) continue;
        this.itemBytesValue -= versionBytes(entry);
        if (entry.isPrepare) {
          this.prepared.delete(entry);
          this.preparedBySeqno.delete(entry.seqno);
        } else if (!entry.isAbort) {
          this.index.delete(entry);
          if (!entry.deleted) this.live--;
        }
      }
      for (const entry of latestAgain) {
        entry.supersededBy = 0;
        this.itemBytesValue += versionBytes(entry);
        if (entry.isPrepare) {
          // its commit or abort was rolled back: in flight again
          this.prepared.set(entry);
          this.preparedBySeqno.set(entry.seqno, entry);
          continue;
        }
        this.index.set(entry);
        if (!entry.deleted) this.live++;
      }
      this.rollBackSyncSeqnos(to);
    }
    if (this.persisted > target) this.persisted = target;
    this.high = target;
    this.snapshotRange = undefined;
    this.sink?.rewritten(this);
    void this.sink?.metaChanged(this);
    return target;
  }

  /**
   * Drops versions superseded at or below `throughSeqno`, and tombstones at or below it (raising the
   * purge seqno). Returns how many versions were dropped.
   */
  compact(throughSeqno: bigint, purgeTombstones = true): number {
    const through = Number(throughSeqno);
    let dropped = 0;
    while ((this.superseded.first()?.supersededBy ?? Number.POSITIVE_INFINITY) <= through) {
      this.dropFromHistory(this.superseded.shift()!);
      dropped++;
    }
    dropped += this.dropPinnedThrough(through);
    if (purgeTombstones) {
      for (const entry of this.log) {
        if (entry.seqno > through) break;
        if (entry.dropped || entry.supersededBy !== 0 || !entry.deleted || entry.isPrepare) continue;
        this.purgeEntry(entry);
        dropped++;
      }
    }
    if (dropped > 0) {
      this.compactLogArray(true);
      if (throughSeqno > this.compacted) this.compacted = throughSeqno;
      this.sink?.rewritten(this);
      void this.sink?.metaChanged(this);
    }
    return dropped;
  }

  /**
   * Purges tombstones deleted at least `maxAgeSeconds` ago (kv_engine's metadata purge): they leave the
   * key index and the log, and the purge seqno rises to the highest one purged, so a client resuming
   * below it is told to roll back to 0 (dcp-spec §7 rule 3); the history start follows (a rollback
   * below a purged tombstone could not bring the key back). A tombstone in a snapshot a stream is
   * sending stays. Returns how many were purged.
   */
  purgeTombstones(maxAgeSeconds: number): number {
    const cutoff = Math.floor(this.clock.now() / 1000) - maxAgeSeconds;
    let safe = Number(this.high);
    for (const reader of this.readers) if (reader.from < safe) safe = reader.from;
    let purged = 0;
    for (const entry of this.log) {
      if (entry.seqno > safe) break;
      if (entry.dropped || entry.supersededBy !== 0 || !entry.deleted || entry.isPrepare) continue;
      if (entry.deleteTime > cutoff) continue;
      this.purgeEntry(entry);
      purged++;
    }
    if (purged > 0) {
      if (this.purge > this.compacted) this.compacted = this.purge;
      // older versions of purged keys (and any superseded below the purge seqno) must not come back
      const compacted = Number(this.compacted);
      while ((this.superseded.first()?.supersededBy ?? compacted + 1) <= compacted) {
        this.dropFromHistory(this.superseded.shift()!);
      }
      this.dropPinnedThrough(compacted);
      this.compactLogArray(false);
      void this.sink?.metaChanged(this);
    }
    return purged;
  }

  /** Restores an item read back from durable storage (no listeners, no sink). */
  restore(item: Item): void {
    this.cas.observe(item.cas);
    this.append(item.key, item.value, item.bySeqno, item, true, true);
    // what is read back is on disk
    this.persisted = item.bySeqno;
  }

  describe(): string {
    return `vb ${this.id} ${vbucketStateName(this.stateValue)} high=${this.high} uuid=${this.uuid}`;
  }

  private write(
    key: Buffer,
    value: Buffer,
    flags: number,
    expiry: number,
    datatype: number,
    deleted: boolean,
    sync?: SyncRole,
  ): Item {
    this.ownWrite();
    const previous = this.index.get(key);
    const fields: EntryFields = {
      cas: this.cas.next(),
      revSeqno: (previous ? previous.revSeqno : this.maxDeletedRev) + 1n,
      flags,
      expiry,
      datatype,
      deleted,
      deleteTime: deleted ? Math.floor(this.clock.now() / 1000) : undefined,
      sync,
    };
    return this.append(key, value, this.high + 1n, fields);
  }

  /** A write of the vBucket's own: its data is no longer a received snapshot. */
  private ownWrite(): void {
    if (this.snapshotRange) {
      this.snapshotRange = undefined;
      this.sink?.snapshotMarked(this, undefined);
    }
  }

  /** A prepare leaves the in-flight set, superseded by its commit or abort (or a replicated write). */
  private complete(prepare: Entry, bySeqno: number): void {
    this.prepared.delete(prepare);
    this.preparedBySeqno.delete(prepare.seqno);
    prepare.supersededBy = bySeqno;
    const bytes = versionBytes(prepare);
    this.itemBytesValue -= bytes;
    this.historyBytesValue += bytes;
    this.superseded.push(prepare);
    if (prepare.seqno > this.highCompleted) this.highCompleted = prepare.seqno;
  }

  /**
   * After a rollback to `to`: the high prepared and completed seqnos of what is left (a scan back
   * from the end, only when they were above it; what is not found is at most the history start).
   */
  private rollBackSyncSeqnos(to: number): void {
    const scanPrepared = this.highPrepared > to;
    const scanCompleted = this.highCompleted > to || scanPrepared;
    if (!scanPrepared && !scanCompleted) return;
    // below the history start versions may be gone: what is not found above it is at most there
    const floor = Number(this.compacted);
    if (scanPrepared) this.highPrepared = Math.min(this.highPrepared, floor);
    let foundPrepared = !scanPrepared;
    let foundCompleted = !scanCompleted;
    let completed = 0;
    for (let i = this.log.length - 1; i >= 0 && !(foundPrepared && foundCompleted); i--) {
      const entry = this.log[i]!;
      if (!foundPrepared && entry.isPrepare) {
        this.highPrepared = entry.seqno;
        foundPrepared = true;
      } else if (!foundCompleted && (entry.isCommit || entry.isAbort)) {
        completed = entry.preparedSeqno;
        foundCompleted = true;
      }
    }
    if (scanCompleted) this.highCompleted = foundCompleted ? completed : Math.min(this.highCompleted, floor);
  }

  private expire(entry: Entry): void {
    this.append(entry.key(), EMPTY, this.high + 1n, {
      cas: this.cas.next(),
      flags: 0,
      expiry: 0,
      revSeqno: entry.revSeqno + 1n,
      datatype: 0,
      deleted: true,
      expired: true,
      deleteTime: Math.floor(this.clock.now() / 1000),
    });
  }

  /** Adds a version as the latest of its key; returns it as an Item (the one the sink and listeners get). */
  /**
   * Adds a version: a plain one or a commit as the latest of its key, a prepare into the in-flight
   * set, an abort as a marker (both outside the key index). A commit or abort completes its prepare; a
   * `replicated` plain version or prepare completes the key's prepare in flight too (a disk snapshot
   * sends a committed write as a plain mutation, kv_engine's backfill). Returns it as an Item (the one
   * the sink and listeners get).
   */
  private append(
    key: Buffer,
    value: Buffer,
    seqno: bigint,
    fields: EntryFields,
    restoring = false,
    replicated = false,
  ): Item {
    const entry = Entry.create(this.arena, key, value, seqno, fields);
    const sync = fields.sync;
    if (sync !== undefined && sync.kind !== 'prepare') {
      const prepared = Number(sync.preparedSeqno);
      const prepare = this.preparedBySeqno.get(prepared);
      if (prepare) this.complete(prepare, entry.seqno);
      else if (prepared > this.highCompleted) this.highCompleted = prepared;
    } else if (replicated && this.preparedBySeqno.size !== 0) {
      const prepare = this.prepared.get(key);
      if (prepare) this.complete(prepare, entry.seqno);
    }
    if (sync?.kind === 'prepare') {
      this.prepared.set(entry);
      this.preparedBySeqno.set(entry.seqno, entry);
      if (entry.seqno > this.highPrepared) this.highPrepared = entry.seqno;
    } else if (sync?.kind !== 'abort') {
      const previous = this.index.set(entry);
      if (!entry.deleted) this.live++;
      if (previous) {
        if (!previous.deleted) this.live--;
        previous.supersededBy = entry.seqno;
        const bytes = versionBytes(previous);
        this.itemBytesValue -= bytes;
        this.historyBytesValue += bytes;
        this.superseded.push(previous);
      }
    }
    this.itemBytesValue += versionBytes(entry);
    this.log.push(entry);
    this.high = seqno;
    this.trimHistory();
    const item = entry.toItem();
    if (restoring) return item;
    this.sink?.appended(this, item, entry);
    for (const listener of this.itemListeners) listener(item);
    if (!this.sink && this.persistListeners.size > 0) {
      for (const listener of this.persistListeners) listener(seqno);
    }
    return item;
  }

  /** A tombstone leaves the log and the key index; the purge seqno and max deleted revseqno follow. */
  private purgeEntry(entry: Entry): void {
    entry.markDropped();
    this.droppedInLog++;
    this.itemBytesValue -= versionBytes(entry);
    // an abort marker is in no index (deleting by its key would take the committed version out)
    if (!entry.isAbort) this.index.delete(entry);
    const seqno = BigInt(entry.seqno);
    if (seqno > this.purge) this.purge = seqno;
    const rev = entry.revSeqno;
    if (rev > this.maxDeletedRev) this.maxDeletedRev = rev;
  }

  /**
   * Drops the oldest-superseded versions while the history is over its bound, never one a reader's
   * snapshot still needs (in its range, superseded above its end): that one is pinned instead. A
   * version superseded inside the snapshot being sent may go: the snapshot is then deduplicated, as
   * kv_engine's checkpoints are, and still consistent at its end. The history start follows.
   */
  private trimHistory(): void {
    if (this.historyBytesValue - this.pinnedBytes <= this.historyLimit) return;
    while (this.historyBytesValue - this.pinnedBytes > this.historyLimit) {
      const oldest = this.superseded.shift();
      if (!oldest) break;
      // only the versions a held snapshot has still to send stay (not everything superseded after
      // its start: a stalled stream would pin every later write)
      if (this.neededByReader(oldest)) {
        this.pinned.push(oldest);
        this.pinnedBytes += versionBytes(oldest);
        continue;
      }
      this.dropFromHistory(oldest);
      this.raiseHistoryStart(oldest.supersededBy);
    }
    this.compactLogArray(false);
  }

  /** Whether a held snapshot (from, floor] still has to send `version` (the latest as of its floor). */
  private neededByReader(entry: Entry): boolean {
    const seqno = entry.seqno;
    for (const reader of this.readers) {
      if (seqno > reader.from && seqno <= reader.floor && entry.supersededBy > reader.floor) return true;
    }
    return false;
  }

  private raiseHistoryStart(seqno: number): void {
    if (seqno > this.compacted) this.compacted = BigInt(seqno);
  }

  /** A reader let go: pinned versions no reader needs leave the history (the history start follows). */
  private unpin(): void {
    if (this.pinned.length > 0) {
      this.pinned = this.pinned.filter((entry) => {
        if (this.neededByReader(entry)) return true;
        this.pinnedBytes -= versionBytes(entry);
        this.dropFromHistory(entry);
        this.raiseHistoryStart(entry.supersededBy);
        return false;
      });
    }
    this.trimHistory();
  }

  /** Drops pinned versions superseded at or below `seqno`; returns how many. */
  private dropPinnedThrough(seqno: number): number {
    const before = this.pinned.length;
    if (before === 0) return 0;
    this.pinned = this.pinned.filter((entry) => {
      if (entry.supersededBy > seqno) return true;
      this.pinnedBytes -= versionBytes(entry);
      this.dropFromHistory(entry);
      return false;
    });
    return before - this.pinned.length;
  }

  private dropFromHistory(entry: Entry): void {
    entry.markDropped();
    this.droppedInLog++;
    this.historyBytesValue -= versionBytes(entry);
  }

  /** Removes dropped versions from the log array once they are half of it (or now, if `force`). */
  private compactLogArray(force: boolean): void {
    if (this.droppedInLog === 0) return;
    if (!force && (this.droppedInLog < 1024 || this.droppedInLog * 2 < this.log.length)) return;
    this.log = this.log.filter((v) => !v.dropped);
    this.droppedInLog = 0;
  }

  private isExpired(expiry: number): boolean {
    return expiry !== 0 && expiry <= Math.floor(this.clock.now() / 1000);
  }

  private absoluteExpiry(expiration: number): number {
    if (expiration === 0) return 0;
    if (expiration <= RELATIVE_EXPIRY_LIMIT) return Math.floor(this.clock.now() / 1000) + expiration;
    return expiration;
  }

  /** Index of the first version with seqno > `after` (binary search; the log is seqno-ordered). */
  private firstAfter(after: bigint): number {
    const from = Number(after);
    let lo = 0;
    let hi = this.log.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.log[mid]!.seqno <= from) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

const EMPTY = Buffer.alloc(0);

export const defaultRandom: StoreRandom = {
  vbuuid(): bigint {
    const bytes = new BigUint64Array(1);
    do {
      globalThis.crypto.getRandomValues(bytes);
    } while (bytes[0] === 0n);
    // Keep vbuuids positive when read as signed 64-bit (some tools print them that way).
    return bytes[0]! & 0x7fff_ffff_ffff_ffffn || 1n;
  },
};
