import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import * as path from 'node:path';
import { pack, unpack } from 'msgpackr';
import { type Clock, systemClock } from '../../protocol/clock.js';
import { AtomicFile } from '../../store/atomic-file.js';
import { campaignWith, leaderOf } from './campaign.js';
import { MetadataError } from './errors.js';
import { acquireDirectoryLock } from './lock.js';
import { type Change, KvState, type StateImage } from './state.js';
import type {
  Compare,
  KeyValue,
  LeaderInfo,
  Leadership,
  Lease,
  LeaseId,
  MetadataStore,
  RangeResult,
  TxnOp,
  TxnResult,
  Watch,
  WatchEvent,
} from './types.js';
import { encodeRecord, readWal, walName, walSeq } from './wal.js';

export interface EmbeddedMetadataStoreOptions {
  /** The store's directory (created if missing); one process owns it at a time. */
  readonly dir: string;
  /** Written into the directory's LOCK file, so a second opener's error names this owner. */
  readonly name?: string;
  /** Lease time; a stepped clock in tests. */
  readonly clock?: Clock;
  /** Records appended to the WAL before a snapshot replaces it (default 4,096). */
  readonly snapshotEveryRecords?: number;
  /** Events held for watches that start in the past (default 10,000). */
  readonly historyLimit?: number;
  /** How a WAL write is made durable (default `datasync`); tests hold or fail it. */
  readonly walSync?: (wal: FileHandle) => Promise<void>;
}

const SNAPSHOT = 'snapshot';

interface DurableWaiter {
  readonly revision: number;
  resolve(): void;
  reject(error: unknown): void;
}

interface Watcher {
  readonly prefix: string;
  /** The next revision this watcher has not been given. */
  next: number;
  readonly listener: (event: WatchEvent) => void;
}

/** A lease of the embedded store: kept alive by this process on its clock until revoked or stopped. */
export class EmbeddedLease implements Lease {
  private lastKeepAlive: number;
  private keepingAlive = true;
  private lostReason: Error | undefined;
  private readonly listeners: ((reason: Error) => void)[] = [];
  private readonly stopTimer: () => void;

  constructor(
    private readonly store: EmbeddedMetadataStore,
    private readonly clock: Clock,
    readonly id: LeaseId,
    readonly ttlMs: number,
  ) {
    this.lastKeepAlive = clock.now();
    this.stopTimer = clock.every(Math.max(1, Math.floor(ttlMs / 3)), () => this.tick());
  }

  deadline(): number {
    return this.lastKeepAlive + this.ttlMs;
  }

  onLost(listener: (reason: Error) => void): void {
    if (this.lostReason) queueMicrotask(() => listener(this.lostReason!));
    else this.listeners.push(listener);
  }

  revoke(): Promise<void> {
    return this.store.endLease(this, 'revoked');
  }

  /** For tests: stop keeping the lease alive, as a hung process would; it then expires at its deadline. */
  stopKeepAlive(): void {
    this.keepingAlive = false;
  }

  get lost(): boolean {
    return this.lostReason !== undefined;
  }

  /** Marks the lease lost and tells the listeners (once). */
  markLost(reason: Error): void {
    if (this.lostReason) return;
    this.lostReason = reason;
    this.stopTimer();
    for (const listener of this.listeners.splice(0)) listener(reason);
  }

  private tick(): void {
    if (this.lostReason) return;
    const now = this.clock.now();
    if (this.keepingAlive) this.lastKeepAlive = now;
    else if (now >= this.deadline()) void this.store.endLease(this, 'expired').catch(() => {});
  }
}

/**
 * The default metadata store, for one machine: the state lives in memory (state.ts) and is made durable
 * by a write-ahead log (wal.ts) that a txn is appended and fsynced to before it resolves. Txns that arrive
 * while an fsync runs share the next one (group commit). Every `snapshotEveryRecords` records the state is
 * written whole with `AtomicFile` and older WAL files are deleted. Open = lock the directory, load the
 * snapshot, replay the WAL (a torn last record is dropped), expire the leases of the previous process
 * (deleting their keys as one new revision), write a fresh snapshot.
 *
 * Reads and watch events see only durable revisions: a read that finds changes still being synced waits
 * for them, so nothing read can be lost by a crash.
 */
export class EmbeddedMetadataStore implements MetadataStore {
  readonly kind = 'embedded' as const;
  private readonly leases = new Map<LeaseId, EmbeddedLease>();
  private readonly watchers = new Set<Watcher>();
  private pending: Buffer[] = [];
  private durableWaiters: DurableWaiter[] = [];
  private durableRevision: number;
  /** True while the group-commit loop runs (cleared in the same turn that finds nothing pending). */
  private flushing = false;
  /** The latest run of that loop, for close(). */
  private flushRun: Promise<void> = Promise.resolve();
  private failure: MetadataError | undefined;
  private closed = false;
  private recordsInWal = 0;
  /** The background snapshot after a WAL rotation, if one runs. */
  private snapshotRun: Promise<void> | undefined;
  private readonly snapshotFile: AtomicFile;

  private constructor(
    readonly dir: string,
    private readonly state: KvState,
    private wal: FileHandle,
    private walSeqNo: number,
    private readonly clock: Clock,
    private readonly snapshotEvery: number,
    private readonly releaseLock: () => Promise<void>,
    private readonly walSync: (wal: FileHandle) => Promise<void>,
  ) {
    this.durableRevision = state.revision;
    this.snapshotFile = new AtomicFile(path.join(dir, SNAPSHOT), () => encodeSnapshot(this.state.image()));
  }

  /** Opens (or creates) the store in `options.dir`; throws `MetadataLockedError` if another process has it. */
  static async open(options: EmbeddedMetadataStoreOptions): Promise<EmbeddedMetadataStore> {
    const dir = path.resolve(options.dir);
    await fsp.mkdir(dir, { recursive: true });
    const release = await acquireDirectoryLock(dir, options.name ?? `pid-${process.pid}`);
    try {
      const historyLimit = options.historyLimit ?? 10_000;
      const names = await fsp.readdir(dir);
      for (const name of names) {
        if (name.startsWith(`${SNAPSHOT}.tmp-`)) await fsp.unlink(path.join(dir, name)).catch(() => {});
      }
      const state = await loadSnapshot(path.join(dir, SNAPSHOT), historyLimit);
      const seqs = names
        .map(walSeq)
        .filter((s): s is number => s !== undefined)
        .sort((a, b) => a - b);
      for (const [i, seq] of seqs.entries()) {
        const file = path.join(dir, walName(seq));
        const { records } = await readWal(file, i === seqs.length - 1);
        for (const record of records) {
          if (record.revision <= state.revision) continue; // already in the snapshot
          if (record.revision !== state.revision + 1) {
            throw new MetadataError(
              'DCPX_ERR_META_CORRUPT',
              `${file}: revision ${record.revision} follows ${state.revision} (a gap in the log)`,
            );
          }
          state.apply(record.revision, record.changes);
        }
      }
      // the previous process's leases died with it: their keys go, as one new revision
      const leased = state.leasedKeys();
      if (leased.length > 0)
        state.apply(
          state.revision + 1,
          leased.map((key) => ({ key })),
        );
      const seq = (seqs.at(-1) ?? 0) + 1;
      const snapshot = new AtomicFile(path.join(dir, SNAPSHOT), () => encodeSnapshot(state.image()));
      await snapshot.changed();
      for (const old of seqs) await fsp.unlink(path.join(dir, walName(old)));
      const wal = await fsp.open(path.join(dir, walName(seq)), 'wx', 0o600);
      await syncDir(dir);
      return new EmbeddedMetadataStore(
        dir,
        state,
        wal,
        seq,
        options.clock ?? systemClock,
        options.snapshotEveryRecords ?? 4096,
        release,
        options.walSync ?? ((handle) => handle.datasync()),
      );
    } catch (error) {
      await release();
      throw error;
    }
  }

  /** The latest durable revision. */
  get revision(): number {
    return this.durableRevision;
  }

  async get(key: string): Promise<KeyValue | undefined> {
    this.checkOpen();
    const kv = this.state.get(key);
    await this.durable(this.state.revision);
    return kv;
  }

  async range(prefix: string): Promise<RangeResult> {
    this.checkOpen();
    const kvs = this.state.range(prefix);
    const revision = this.state.revision;
    await this.durable(revision);
    return { kvs, revision };
  }

  async txn(compares: readonly Compare[], ops: readonly TxnOp[]): Promise<TxnResult> {
    this.checkOpen();
    if (!compares.every((c) => this.state.holds(c))) {
      const revision = this.state.revision;
      await this.durable(revision);
      return { succeeded: false, revision };
    }
    for (const op of ops) {
      if (op.type === 'put' && op.lease !== undefined) {
        const lease = this.leases.get(op.lease);
        if (!lease || lease.lost) {
          throw new MetadataError(
            'DCPX_ERR_META_NO_LEASE',
            `put ${op.key}: lease ${op.lease} does not exist`,
          );
        }
      }
    }
    const changes = this.state.resolve(ops);
    const revision = changes.length > 0 ? this.commit(changes) : this.state.revision;
    await this.durable(revision);
    return { succeeded: true, revision };
  }

  async watch(prefix: string, fromRevision: number, listener: (event: WatchEvent) => void): Promise<Watch> {
    this.checkOpen();
    if (fromRevision > 0 && fromRevision <= this.state.compactRevision) {
      throw new MetadataError(
        'DCPX_ERR_META_COMPACTED',
        `watch ${prefix} from revision ${fromRevision}: history is held from ${this.state.compactRevision + 1}`,
      );
    }
    const watcher: Watcher = {
      prefix,
      next: fromRevision > 0 ? fromRevision : this.durableRevision + 1,
      listener,
    };
    this.watchers.add(watcher);
    this.deliver(watcher);
    return {
      close: async () => {
        this.watchers.delete(watcher);
      },
    };
  }

  async grantLease(ttlMs: number): Promise<Lease> {
    this.checkOpen();
    const lease = new EmbeddedLease(this, this.clock, randomBytes(8).toString('hex'), ttlMs);
    this.leases.set(lease.id, lease);
    return lease;
  }

  campaign(election: string, value: Uint8Array, lease: Lease, signal?: AbortSignal): Promise<Leadership> {
    return campaignWith(this, election, value, lease, signal);
  }

  leader(election: string): Promise<LeaderInfo | undefined> {
    return leaderOf(this, election);
  }

  /** Ends a lease: its keys are deleted as one revision, and its holder is told. */
  async endLease(lease: EmbeddedLease, why: 'revoked' | 'expired'): Promise<void> {
    if (this.leases.get(lease.id) !== lease) return;
    this.leases.delete(lease.id);
    lease.markLost(new MetadataError('DCPX_ERR_META_LEASE_LOST', `lease ${lease.id} ${why}`));
    if (this.closed || this.failure) return;
    const keys = this.state.keysOfLease(lease.id);
    const revision = keys.length > 0 ? this.commit(keys.map((key) => ({ key }))) : this.state.revision;
    await this.durable(revision);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    for (const lease of [...this.leases.values()]) await this.endLease(lease, 'revoked').catch(() => {});
    this.closed = true;
    this.watchers.clear();
    await this.durable(this.state.revision).catch(() => {});
    await this.flushRun;
    await this.snapshotRun;
    await this.wal.close().catch(() => {});
    await this.releaseLock();
  }

  /** Applies `changes` as the next revision and queues its WAL record; returns the revision. */
  private commit(changes: readonly Change[]): number {
    const revision = this.state.revision + 1;
    this.state.apply(revision, changes);
    this.pending.push(encodeRecord({ revision, changes }));
    if (!this.flushing) {
      this.flushing = true;
      this.flushRun = this.flush();
    }
    return revision;
  }

  /** Resolves once `revision` is durable. */
  private durable(revision: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (revision <= this.durableRevision) return Promise.resolve();
    return new Promise((resolve, reject) => this.durableWaiters.push({ revision, resolve, reject }));
  }

  /** The group-commit loop: everything queued while one fsync runs goes out in the next write + fsync. */
  private async flush(): Promise<void> {
    // the finally runs in the same turn as the loop's last look at `pending`, so no commit slips between
    try {
      while (this.pending.length > 0) {
        const batch = this.pending;
        this.pending = [];
        const revision = this.state.revision; // the last record queued is this revision's
        try {
          await this.wal.write(batch.length === 1 ? batch[0]! : Buffer.concat(batch));
          await this.walSync(this.wal);
        } catch (error) {
          this.fail(error);
          return;
        }
        this.durableRevision = revision;
        const waiters = this.durableWaiters;
        this.durableWaiters = [];
        for (const w of waiters) {
          if (w.revision <= revision) w.resolve();
          else this.durableWaiters.push(w);
        }
        for (const watcher of this.watchers) this.deliver(watcher);
        this.recordsInWal += batch.length;
        if (this.recordsInWal >= this.snapshotEvery && !this.snapshotRun) await this.rotate();
      }
    } finally {
      this.flushing = false;
    }
  }

  /**
   * Starts a new WAL file, then writes the snapshot in the background and deletes the older WAL files once
   * it is durable. The snapshot holds at least every revision of the older files (it is taken after the
   * switch), and replay skips records the snapshot already has.
   */
  private async rotate(): Promise<void> {
    const seq = this.walSeqNo + 1;
    let next: FileHandle;
    try {
      next = await fsp.open(path.join(this.dir, walName(seq)), 'wx', 0o600);
      await syncDir(this.dir); // the new file's name must be durable before a record acknowledged in it
    } catch (error) {
      this.fail(error);
      return;
    }
    const old = this.wal;
    const oldSeqs = this.walSeqNo;
    this.wal = next;
    this.walSeqNo = seq;
    this.recordsInWal = 0;
    this.snapshotRun = (async () => {
      try {
        await old.close();
        await this.snapshotFile.changed();
        for (let s = oldSeqs; ; s--) {
          try {
            await fsp.unlink(path.join(this.dir, walName(s)));
          } catch {
            break;
          }
        }
      } catch {
        // the old WAL files stay; the next rotation tries again
      } finally {
        this.snapshotRun = undefined;
      }
    })();
  }

  private fail(error: unknown): void {
    this.failure ??= new MetadataError(
      'DCPX_ERR_META_WRITE',
      `writing the metadata log in ${this.dir} failed; the store accepts no more writes`,
      { cause: error },
    );
    for (const w of this.durableWaiters.splice(0)) w.reject(this.failure);
  }

  /** Gives `watcher` every durable event it has not had. */
  private deliver(watcher: Watcher): void {
    if (watcher.next > this.durableRevision) return;
    const events = this.state.eventsBetween(watcher.next, this.durableRevision);
    watcher.next = this.durableRevision + 1;
    for (const event of events) {
      if (!event.kv.key.startsWith(watcher.prefix)) continue;
      if (!this.watchers.has(watcher)) return;
      try {
        watcher.listener(event);
      } catch (error) {
        // a listener's bug must not stop the commit loop; surface it as an uncaught error
        queueMicrotask(() => {
          throw error;
        });
      }
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new MetadataError('DCPX_ERR_META_CLOSED', `metadata store ${this.dir} is closed`);
    if (this.failure) throw this.failure;
  }
}

function encodeSnapshot(image: StateImage): Buffer {
  return pack(image);
}

async function loadSnapshot(file: string, historyLimit: number): Promise<KvState> {
  let data: Buffer;
  try {
    data = await fsp.readFile(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return new KvState(historyLimit);
    throw error;
  }
  let image: StateImage;
  try {
    image = unpack(data) as StateImage;
  } catch (error) {
    throw new MetadataError('DCPX_ERR_META_CORRUPT', `${file} cannot be decoded`, { cause: error });
  }
  if (image?.v !== 1) throw new MetadataError('DCPX_ERR_META_CORRUPT', `${file}: unknown snapshot version`);
  const bytes = (kv: KeyValue): KeyValue => ({ ...kv, value: new Uint8Array(kv.value) });
  return KvState.fromImage(
    {
      ...image,
      kvs: image.kvs.map(bytes),
      history: image.history.map((e) => ({ type: e.type, kv: bytes(e.kv) })),
    },
    historyLimit,
  );
}

async function syncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
