import * as fs from 'node:fs';
import * as path from 'node:path';
import type { VBucketState } from '../protocol/index.js';
import { AtomicFile, type AtomicFileOps } from './atomic-file.js';
import { compactFile } from './compaction.js';
import type { Entry } from './entry.js';
import { StoreError } from './errors.js';
import {
  decodeRecords,
  encodeEntryRecord,
  encodeHistoryRecord,
  encodeRecord,
  encodeSnapshotRecord,
  entryRecordBytes,
  packr,
} from './record-codec.js';
import type { Item, SnapshotRange, VBucketMeta } from './types.js';
import { type VBucket, type VBucketSink, VERSION_OVERHEAD_BYTES } from './vbucket.js';

// Durable mode (--data-dir): one append-only log file per vBucket (vb-<id>.log) and one metadata file
// (meta.msgpack, written atomically). Appends are group-committed: the records of one event-loop turn are
// written with one write(2) per vBucket before the writes they carry are acknowledged, so a crash of
// the process loses nothing acknowledged; fsync runs every `syncIntervalMs` (the "last sync" that a
// machine crash falls back to).

export const META_FILE = 'meta.msgpack';
const FORMAT = 1;

interface MetaFileContent {
  format: number;
  /** False while the store is open: found false at start, the last stop was unclean. */
  clean: boolean;
  vbuckets: Record<string, VBucketMeta>;
}

export interface RecoveredState {
  /** Whether the previous stop was clean (no metadata at all counts as clean: a new store). */
  clean: boolean;
  metas: Map<number, VBucketMeta>;
}

export interface DurableOptions {
  dataDir: string;
  syncIntervalMs?: number;
  metaFileOps?: AtomicFileOps;
  metaRetryBudgetMs?: number;
  /**
   * Compact a vBucket's file when this share of it is stale (versions no longer held, framing aside);
   * couchstore's default fragmentation trigger is 30%. 0 or less turns automatic compaction off.
   */
  compactionThreshold?: number;
  /** Files smaller than this are not compacted (default 128 KiB). */
  compactionMinBytes?: number;
  /** Told when a compaction starts and ends (for logs). */
  onCompaction?: (event: CompactionEvent) => void;
  onError?: (error: unknown, context: string) => void;
}

export type CompactionEvent =
  | { vb: number; phase: 'started'; bytes: number }
  /** The temp file is complete and being fsynced; appends are mirrored into it until the rename. */
  | { vb: number; phase: 'swapping'; bytes: number }
  | { vb: number; phase: 'done'; bytesBefore: number; bytesAfter: number; ms: number }
  | { vb: number; phase: 'abandoned'; ms: number };

/** Framing and field overhead of one item record besides key and value (estimate for the trigger). */
const RECORD_OVERHEAD_BYTES = 48;
/**
 * Default smallest file compacted: small enough that a vBucket's file stays near its live data at the
 * node's default 64 vBuckets (a 100k-key data set is about 0.5 MB per vBucket), large enough that tiny
 * files are not rewritten at every flush.
 */
const DEFAULT_COMPACTION_MIN_BYTES = 128 * 1024;
/**
 * Automatic compactions running at once. One (kv_engine compacts one vBucket file at a time per
 * bucket): the directory holds at most one temp copy, of one vBucket's latest versions. Two measured
 * alike in the soak (dir 1.40x vs 1.42x the live data at most, on a loaded machine).
 */
const MAX_CONCURRENT_COMPACTIONS = 1;

export interface CompactionStats {
  /** Compactions finished. */
  runs: number;
  /** Compactions given up (a rollback rewrote the file, the store closed, or an error). */
  abandoned: number;
  /** Total and last duration in ms. */
  totalMs: number;
  lastMs: number;
  /** Compactions running now. */
  running: number;
  /** Bytes of the files before and after, summed over runs. */
  bytesBefore: number;
  bytesAfter: number;
  /** Bytes appended while a temp file was fsynced, written to both files. */
  mirroredBytes: number;
}

export class DurableStorage implements VBucketSink {
  private readonly fds = new Map<number, number>();
  private readonly pending = new Map<number, Buffer[]>();
  private readonly unsynced = new Map<number, number>();
  private flushScheduled = false;
  private commitWaiters: (() => void)[] = [];
  private readonly syncTimer: NodeJS.Timeout;
  private readonly metaFile: AtomicFile;
  private vbuckets: readonly VBucket[] = [];
  private clean = false;
  private closed = false;
  /** close() has begun: no compaction starts (its final flush must not start one it then leaves running). */
  private closing = false;
  /** Bytes in each vBucket's file (written to the OS). */
  private readonly fileBytes = new Map<number, number>();
  /** Highest seqno of each vBucket written to its file (an fsync after the write makes it persisted). */
  private readonly written = new Map<number, bigint>();
  /**
   * Automatic compactions run one at a time over the whole store (kv_engine compacts one vBucket file at
   * a time): the directory then holds at most one temp copy, of one vBucket's live data. A vBucket whose
   * file passes the threshold meanwhile waits here; the most stale starts next.
   */
  private readonly compactionQueue = new Set<number>();
  private readonly byId = new Map<number, VBucket>();
  /** A compaction per vBucket at most; a rewrite bumps the generation and abandons it. */
  private readonly compacting = new Map<number, number>();
  /** A compaction's temp file that each append to the vBucket's file is also written to (compaction.ts). */
  private readonly mirrors = new Map<number, { fd: number; position: number; failed: boolean }>();
  /**
   * vBuckets between the start of mirroring and the directory fsync after the rename, with their
   * unsynced bytes at the start (the temp file's fsync covers them). The periodic fsync leaves them
   * alone: what it would sync may be in a file that is not yet durably in place.
   */
  private readonly swapping = new Map<number, number>();
  /** Bumped when mirroring starts: a periodic fsync issued before then no longer counts. */
  private readonly syncEpochs = new Map<number, number>();
  private readonly generations = new Map<number, number>();
  /** vBuckets with a periodic fsync in flight. */
  private readonly fsyncing = new Set<number>();
  private readonly compactionDone = new Set<() => void>();
  readonly compactionStats: CompactionStats = {
    runs: 0,
    abandoned: 0,
    totalMs: 0,
    lastMs: 0,
    running: 0,
    bytesBefore: 0,
    bytesAfter: 0,
    mirroredBytes: 0,
  };

  constructor(private readonly options: DurableOptions) {
    this.metaFile = new AtomicFile(path.join(options.dataDir, META_FILE), () => this.metaSnapshot(), {
      ops: options.metaFileOps,
      retryBudgetMs: options.metaRetryBudgetMs,
      onAttemptFailed: (error, attempt) => options.onError?.(error, `metadata write attempt ${attempt}`),
    });
    this.syncTimer = setInterval(() => this.syncSome(), options.syncIntervalMs ?? 100);
    this.syncTimer.unref();
  }

  /** Reads the metadata file and removes temp files a crashed writer left behind. */
  static readMeta(dataDir: string): RecoveredState {
    fs.mkdirSync(dataDir, { recursive: true });
    for (const name of fs.readdirSync(dataDir)) {
      if (name.includes('.tmp-')) fs.rmSync(path.join(dataDir, name), { force: true });
    }
    const file = path.join(dataDir, META_FILE);
    if (!fs.existsSync(file)) return { clean: true, metas: new Map() };
    let content: MetaFileContent;
    try {
      content = packr.unpack(fs.readFileSync(file)) as MetaFileContent;
    } catch (error) {
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file} is not readable metadata`, { cause: error });
    }
    if (content?.format !== FORMAT) {
      throw new StoreError('DCPX_ERR_STORE_CORRUPT', `${file}: unknown format ${String(content?.format)}`);
    }
    const metas = new Map<number, VBucketMeta>();
    for (const [id, meta] of Object.entries(content.vbuckets)) {
      metas.set(Number(id), {
        state: meta.state as VBucketState,
        failoverLog: meta.failoverLog.map((e) => ({ vbuuid: BigInt(e.vbuuid), seqno: BigInt(e.seqno) })),
        purgeSeqno: BigInt(meta.purgeSeqno),
        compactedSeqno: BigInt(meta.compactedSeqno ?? meta.purgeSeqno),
        maxDeletedRevSeqno: BigInt(meta.maxDeletedRevSeqno ?? 0),
        ...(meta.snapshot
          ? { snapshot: { start: BigInt(meta.snapshot.start), end: BigInt(meta.snapshot.end) } }
          : {}),
      });
    }
    return { clean: content.clean, metas };
  }

  /**
   * Reads a vBucket's log file back into it, cutting a torn tail, with the snapshot range of its last
   * snapshot record. Returns the items restored.
   */
  recoverLog(vb: VBucket): number {
    const file = this.logPath(vb.id);
    // the previous format kept the range in the metadata (read into the vBucket): used only for a log
    // without snapshot records, and written into the log so that from now on the log alone tells
    const fromMeta = vb.markedSnapshot;
    vb.restoreSnapshot(undefined);
    if (!fs.existsSync(file)) return 0;
    const data = fs.readFileSync(file);
    const {
      items,
      snapshot: fromLog,
      snapshotRecords,
      historyStart,
      purgeSeqno,
      maxDeletedRevSeqno,
      highPreparedSeqno,
      highCompletedSeqno,
      validLength,
    } = decodeRecords(data, file);
    vb.restoreHistoryStart(historyStart, purgeSeqno, maxDeletedRevSeqno);
    vb.restoreSyncSeqnos(highPreparedSeqno, highCompletedSeqno);
    for (const item of items) vb.restore(item);
    this.fileBytes.set(vb.id, validLength);
    const snapshot = snapshotRecords ? fromLog : fromMeta;
    // items past the marker's end are the vBucket's own writes: no snapshot of another's history
    if (snapshot && vb.highSeqno <= snapshot.end) {
      vb.restoreSnapshot(snapshot);
      if (!snapshotRecords) this.pushRecord(vb.id, encodeSnapshotRecord(snapshot));
    }
    if (validLength < data.length) {
      this.options.onError?.(
        new StoreError(
          'DCPX_ERR_STORE_CORRUPT',
          `${file}: cut a torn tail of ${data.length - validLength} bytes`,
        ),
        'recovery',
      );
      fs.truncateSync(file, validLength);
    }
    return items.length;
  }

  /** Starts persisting these vBuckets; marks the store as running (not clean) on disk. */
  async attach(vbuckets: readonly VBucket[]): Promise<void> {
    this.vbuckets = vbuckets;
    for (const vb of vbuckets) {
      vb.sink = this;
      this.byId.set(vb.id, vb);
    }
    this.clean = false;
    await this.metaFile.changed();
  }

  appended(vb: VBucket, _item: Item, entry: Entry): void {
    // written by hand from the entry's arena bytes, as compaction does: the same record encodeRecord
    // makes of the item, without msgpack's generic packing (a third of a replica's apply time, issue 12)
    const out = Buffer.allocUnsafe(entryRecordBytes(entry));
    this.pushRecord(vb.id, out.subarray(0, encodeEntryRecord(entry, out, 0)));
  }

  snapshotMarked(vb: VBucket, range: SnapshotRange | undefined): void {
    this.pushRecord(vb.id, encodeSnapshotRecord(range));
  }

  private pushRecord(vb: number, record: Buffer): void {
    let list = this.pending.get(vb);
    if (!list) {
      list = [];
      this.pending.set(vb, list);
    }
    list.push(record);
    this.scheduleFlush();
  }

  rewritten(vb: VBucket): void {
    this.pending.delete(vb.id);
    // a running compaction is abandoned: its temp file gets no more appends
    this.mirrors.delete(vb.id);
    this.generations.set(vb.id, (this.generations.get(vb.id) ?? 0) + 1);
    const file = this.logPath(vb.id);
    const temp = `${file}.tmp-${process.pid}`;
    const records: Buffer[] = [
      encodeHistoryRecord(
        vb.historyStart,
        vb.purgeSeqno,
        vb.maxDeletedRevSeqno,
        vb.highPreparedSeqno,
        vb.highCompletedSeqno,
      ),
    ];
    for (const item of vb.range(0n, vb.highSeqno)) records.push(encodeRecord(item));
    const marked = vb.markedSnapshot;
    if (marked) records.push(encodeSnapshotRecord(marked));
    const fd = fs.openSync(temp, 'w', 0o600);
    const data = Buffer.concat(records);
    this.fileBytes.set(vb.id, data.length);
    try {
      fs.writeSync(fd, data);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    const old = this.fds.get(vb.id);
    if (old !== undefined) {
      fs.closeSync(old);
      this.fds.delete(vb.id);
    }
    fs.renameSync(temp, file);
    this.fsyncDirSync();
    this.unsynced.set(vb.id, 0);
    this.written.set(vb.id, vb.highSeqno);
    vb.markPersisted(vb.highSeqno);
  }

  metaChanged(vb: VBucket): Promise<void> {
    if (this.closed) {
      const refused = Promise.reject(
        new StoreError('DCPX_ERR_STORE_CLOSED', `vb ${vb.id}: metadata changed after the store closed`),
      );
      refused.catch(() => {});
      return refused;
    }
    const written = this.metaFile.changed();
    written.catch((error) => this.options.onError?.(error, 'metadata write'));
    return written;
  }

  /** Resolves when every change so far has been written to the OS (survives a process crash). */
  commit(): Promise<void> {
    if (!this.flushScheduled && this.pending.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.commitWaiters.push(resolve));
  }

  /** Resolves when the metadata on disk includes every change so far. */
  metaSettled(): Promise<void> {
    return this.metaFile.settled();
  }

  /** Bytes written to a vBucket's file but not yet fsynced (the reference node's takeover check). */
  unsyncedBytes(vb: number): number {
    let pendingBytes = 0;
    for (const record of this.pending.get(vb) ?? []) pendingBytes += record.length;
    return (this.unsynced.get(vb) ?? 0) + pendingBytes;
  }

  /** Writes and fsyncs everything now. */
  syncAll(): void {
    this.flush();
    for (const [vb, fd] of this.fds) {
      fs.fsyncSync(fd);
      this.unsynced.set(vb, 0);
      this.persistedTo(vb, this.written.get(vb));
    }
    // a compaction's temp file holds the same records and may be renamed in place next; its rename
    // may not be durable yet (its directory fsync runs off the event loop)
    for (const mirror of this.mirrors.values()) fs.fsyncSync(mirror.fd);
    if (this.swapping.size > 0) this.fsyncDirSync();
    // everything is synced now: the end of a swap has nothing left to count as synced
    for (const vb of this.swapping.keys()) this.swapping.set(vb, 0);
  }

  /** Flushes and fsyncs everything, marks the stop clean, and closes the files. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    clearInterval(this.syncTimer);
    // running compactions are abandoned (their temp files removed) before the files close
    for (const vb of this.compacting.keys()) {
      this.generations.set(vb, (this.generations.get(vb) ?? 0) + 1);
    }
    await this.compactionsSettled();
    this.syncAll();
    this.clean = true;
    await this.metaFile.changed();
    this.closed = true;
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  /** Resolves when no compaction is running. */
  compactionsSettled(): Promise<void> {
    if (this.compacting.size === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.compacting.size > 0) return;
        this.compactionDone.delete(check);
        resolve();
      };
      this.compactionDone.add(check);
    });
  }

  /** Bytes of a vBucket's file. */
  fileSize(vb: number): number {
    return this.fileBytes.get(vb) ?? 0;
  }

  /**
   * Starts a compaction of vBucket `id`'s file when its stale share passes the threshold, or queues it
   * while another compaction runs.
   */
  private maybeCompact(id: number): void {
    if (this.staleBytes(id) === 0) return;
    if (this.compacting.has(id)) return;
    if (this.compacting.size >= MAX_CONCURRENT_COMPACTIONS) {
      this.compactionQueue.add(id);
      return;
    }
    void this.compact(this.byId.get(id)!);
  }

  /** Starts the most stale queued vBucket whose file still passes the threshold. */
  private startQueued(): void {
    let best: number | undefined;
    let bestStale = 0;
    for (const id of this.compactionQueue) {
      const stale = this.staleBytes(id);
      if (stale === 0) this.compactionQueue.delete(id);
      else if (stale > bestStale) {
        best = id;
        bestStale = stale;
      }
    }
    if (best !== undefined) this.maybeCompact(best);
  }

  /**
   * Estimated stale bytes of a vBucket's file when they pass the threshold share of it (0 otherwise, or
   * when compaction is off, the store closes, or the file is small). A compacted file holds the latest
   * version of each key, so the live part is estimated from those alone.
   */
  private staleBytes(id: number): number {
    const threshold = this.options.compactionThreshold ?? 0.3;
    if (threshold <= 0 || this.closing || this.closed) return 0;
    const size = this.fileBytes.get(id) ?? 0;
    if (size < (this.options.compactionMinBytes ?? DEFAULT_COMPACTION_MIN_BYTES)) return 0;
    const vb = this.byId.get(id);
    if (!vb) return 0;
    const latest = vb.latestCount;
    const live = vb.itemBytes - latest * VERSION_OVERHEAD_BYTES + latest * RECORD_OVERHEAD_BYTES;
    const stale = size - live;
    return stale / size < threshold ? 0 : stale;
  }

  /**
   * Compacts a vBucket's file now (see compaction.ts); resolves when done or given up (a rollback
   * rewrote the file meanwhile, or the store closed). Appends keep flowing to the old file meanwhile.
   */
  async compact(vb: VBucket): Promise<void> {
    if (this.compacting.has(vb.id) || this.closing || this.closed) return;
    const generation = this.generations.get(vb.id) ?? 0;
    this.compacting.set(vb.id, generation);
    this.compactionStats.running++;
    const started = performance.now();
    const before = this.fileBytes.get(vb.id) ?? 0;
    this.options.onCompaction?.({ vb: vb.id, phase: 'started', bytes: before });
    let outcome: 'done' | 'abandoned' = 'abandoned';
    /** The seqno written when mirroring started: the temp file's fsync covers it. */
    let swapSeqno: bigint | undefined;
    try {
      this.flush();
      const file = this.logPath(vb.id);
      if (!fs.existsSync(file)) this.fd(vb.id);
      // the latest version of each key at the snapshot point, as couchstore's compaction keeps: the
      // superseded versions stay in memory (the history) but leave the file, whose history start is
      // then the snapshot point (after a restart a rollback below it goes to 0, dcp-spec §7)
      const snapshotPoint = vb.highSeqno;
      outcome = await compactFile(
        file,
        `${file}.tmp-${process.pid}-compact`,
        {
          entries: vb.latestEntries(snapshotPoint),
          historyStart: snapshotPoint > vb.historyStart ? snapshotPoint : vb.historyStart,
          purgeSeqno: vb.purgeSeqno,
          maxDeletedRevSeqno: vb.maxDeletedRevSeqno,
          highPreparedSeqno: vb.highPreparedSeqno,
          highCompletedSeqno: vb.highCompletedSeqno,
          marked: vb.markedSnapshot,
          cut: this.fileBytes.get(vb.id) ?? 0,
        },
        {
          current: () => !this.closed && (this.generations.get(vb.id) ?? 0) === generation,
          flushOld: () => {
            this.flush();
            return this.fileBytes.get(vb.id) ?? 0;
          },
          mirror: (fd, position) => {
            this.mirrors.set(vb.id, { fd, position, failed: false });
            this.swapping.set(vb.id, this.unsynced.get(vb.id) ?? 0);
            swapSeqno = this.written.get(vb.id);
            this.syncEpochs.set(vb.id, (this.syncEpochs.get(vb.id) ?? 0) + 1);
            this.options.onCompaction?.({ vb: vb.id, phase: 'swapping', bytes: position });
          },
          stopMirror: () => {
            const mirror = this.mirrors.get(vb.id);
            this.mirrors.delete(vb.id);
            return mirror && !mirror.failed ? mirror.position : undefined;
          },
          replaced: (size) => {
            const old = this.fds.get(vb.id);
            if (old !== undefined) {
              this.fds.delete(vb.id);
              // off the event loop: closing the last descriptor of the replaced file frees its blocks
              // (measured ~6 ms a close in the soak, on the event loop at every compaction)
              fs.close(old, (error) => {
                if (error) this.options.onError?.(error, `compaction of vb ${vb.id}: close of the old file`);
              });
            }
            this.fileBytes.set(vb.id, size);
          },
          renameDurable: () => {
            const covered = this.swapping.get(vb.id) ?? 0;
            this.swapping.delete(vb.id);
            this.unsynced.set(vb.id, Math.max(0, (this.unsynced.get(vb.id) ?? 0) - covered));
            this.persistedTo(vb.id, swapSeqno);
          },
        },
      );
    } catch (error) {
      this.options.onError?.(error, `compaction of vb ${vb.id}`);
    } finally {
      this.compacting.delete(vb.id);
      this.compactionQueue.delete(vb.id);
      this.mirrors.delete(vb.id);
      this.swapping.delete(vb.id);
      this.compactionStats.running--;
      const ms = performance.now() - started;
      if (outcome === 'done') {
        this.compactionStats.runs++;
        this.compactionStats.totalMs += ms;
        this.compactionStats.lastMs = ms;
        this.compactionStats.bytesBefore += before;
        this.compactionStats.bytesAfter += this.fileBytes.get(vb.id) ?? 0;
        this.options.onCompaction?.({
          vb: vb.id,
          phase: 'done',
          bytesBefore: before,
          bytesAfter: this.fileBytes.get(vb.id) ?? 0,
          ms,
        });
      } else {
        this.compactionStats.abandoned++;
        this.options.onCompaction?.({ vb: vb.id, phase: 'abandoned', ms });
      }
      // the queued files first; what was appended meanwhile may pass the threshold again
      this.startQueued();
      if (outcome === 'done') this.maybeCompact(vb.id);
      for (const done of [...this.compactionDone]) done();
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    for (const [vb, records] of this.pending) {
      const data = records.length === 1 ? records[0]! : Buffer.concat(records);
      fs.writeSync(this.fd(vb), data);
      const mirror = this.mirrors.get(vb);
      if (mirror && !mirror.failed) {
        try {
          fs.writeSync(mirror.fd, data, 0, data.length, mirror.position);
          mirror.position += data.length;
          this.compactionStats.mirroredBytes += data.length;
        } catch (error) {
          // the old file has the records: only the compaction fails (it sees `failed` and gives up)
          mirror.failed = true;
          this.options.onError?.(error, `compaction of vb ${vb}: mirrored append`);
        }
      }
      this.unsynced.set(vb, (this.unsynced.get(vb) ?? 0) + data.length);
      this.fileBytes.set(vb, (this.fileBytes.get(vb) ?? 0) + data.length);
      const high = this.byId.get(vb)?.highSeqno;
      if (high !== undefined) this.written.set(vb, high);
    }
    const written = [...this.pending.keys()];
    this.pending.clear();
    for (const vb of written) this.maybeCompact(vb);
    const waiters = this.commitWaiters;
    this.commitWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private syncSome(): void {
    for (const [vb, fd] of this.fds) {
      if ((this.unsynced.get(vb) ?? 0) === 0 || this.swapping.has(vb)) continue;
      // one fsync per file in flight: on a slow disk they would queue up in libuv's thread pool
      // without bound, ahead of the compaction's writes and fsyncs
      if (this.fsyncing.has(vb)) continue;
      this.fsyncing.add(vb);
      const bytes = this.unsynced.get(vb)!;
      const epoch = this.syncEpochs.get(vb) ?? 0;
      const generation = this.generations.get(vb) ?? 0;
      const seqno = this.written.get(vb);
      fs.fsync(fd, (error) => {
        this.fsyncing.delete(vb);
        if (error) this.options.onError?.(error, `fsync of vb ${vb}`);
        else if ((this.syncEpochs.get(vb) ?? 0) === epoch) {
          this.unsynced.set(vb, Math.max(0, (this.unsynced.get(vb) ?? 0) - bytes));
          // a rewrite meanwhile (rollback) may have cut what this fsync covered
          if ((this.generations.get(vb) ?? 0) === generation) this.persistedTo(vb, seqno);
        }
      });
    }
  }

  /** Everything of `vb` up to `seqno` is on disk (persist-level durability waits for it). */
  private persistedTo(vb: number, seqno: bigint | undefined): void {
    if (seqno !== undefined) this.byId.get(vb)?.markPersisted(seqno);
  }

  private fd(vb: number): number {
    let fd = this.fds.get(vb);
    if (fd === undefined) {
      const file = this.logPath(vb);
      const created = !fs.existsSync(file);
      fd = fs.openSync(file, 'a', 0o600);
      this.fds.set(vb, fd);
      if (!this.fileBytes.has(vb)) this.fileBytes.set(vb, fs.fstatSync(fd).size);
      if (created) this.fsyncDirSync();
    }
    return fd;
  }

  private logPath(vb: number): string {
    return path.join(this.options.dataDir, `vb-${vb}.log`);
  }

  private fsyncDirSync(): void {
    const fd = fs.openSync(this.options.dataDir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }

  private metaSnapshot(): Buffer {
    const vbuckets: Record<string, VBucketMeta> = {};
    for (const vb of this.vbuckets) vbuckets[vb.id] = vb.meta();
    const content: MetaFileContent = { format: FORMAT, clean: this.clean, vbuckets };
    return packr.pack(content);
  }
}
