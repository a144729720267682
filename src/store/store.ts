import { VBucketState } from '../protocol/index.js';
import type { AtomicFileOps } from './atomic-file.js';
import { CasClock } from './cas.js';
import { type CompactionEvent, type CompactionStats, DurableStorage } from './durable.js';
import { StoreError } from './errors.js';
import type { StoreClock, StoreRandom } from './types.js';
import { DEFAULT_HISTORY_BYTES, defaultRandom, VBucket } from './vbucket.js';

export interface StoreOptions {
  /** Number of vBuckets (ids 0..n-1). */
  vbuckets: number;
  /** Durable mode: the data directory. Without it the store lives in memory only. */
  dataDir?: string;
  /** Initial states for vBuckets that have no stored state (a new store). Others start dead. */
  initialStates?: ReadonlyMap<number, VBucketState>;
  clock?: StoreClock;
  random?: StoreRandom;
  /** How often written data is fsynced (durable mode). */
  syncIntervalMs?: number;
  /** File operations of the metadata writer (tests inject failures). */
  metaFileOps?: AtomicFileOps;
  /** How long a failing metadata write keeps retrying before the changes waiting on it fail. */
  metaRetryBudgetMs?: number;
  /**
   * Bytes of superseded versions the store keeps for in-memory streams and rollback, shared evenly
   * by its vBuckets (default DEFAULT_HISTORY_BYTES over all of them, at least 1 MiB each).
   */
  historyBytes?: number;
  /** Durable mode: compact a vBucket file when this share of it is stale (default 0.3; 0 = never). */
  compactionThreshold?: number;
  /** Durable mode: files smaller than this are not compacted (default 1 MiB). */
  compactionMinBytes?: number;
  onCompaction?: (event: CompactionEvent) => void;
  /** Tombstones older than this are purged, raising the purge seqno (default 3 days, as kv_engine). */
  tombstonePurgeAgeSeconds?: number;
  /** How often tombstones are looked at for the purge (default 60 s; 0 = never). */
  tombstonePurgeIntervalMs?: number;
  onError?: (error: unknown, context: string) => void;
}

/** kv_engine's default persistent metadata purge age: 3 days. */
export const DEFAULT_TOMBSTONE_PURGE_AGE_SECONDS = 3 * 24 * 3600;

export interface RecoveryReport {
  /** False when the previous stop was unclean (each vBucket then got a new failover entry). */
  clean: boolean;
  items: number;
}

/** The embedded vBucket store: n vBuckets, in memory or durable in a data directory. */
export class Store {
  private readonly purgeTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly vbuckets: readonly VBucket[],
    private readonly durable: DurableStorage | undefined,
    readonly recovery: RecoveryReport,
    private readonly purgeAgeSeconds: number,
    purgeIntervalMs: number,
  ) {
    if (purgeIntervalMs > 0) {
      this.purgeTimer = setInterval(() => this.purgeTombstones(), purgeIntervalMs);
      this.purgeTimer.unref();
    }
  }

  /** Purges the tombstones older than the purge age in every vBucket; returns how many. */
  purgeTombstones(): number {
    let n = 0;
    for (const vb of this.vbuckets) n += vb.purgeTombstones(this.purgeAgeSeconds);
    return n;
  }

  static async open(options: StoreOptions): Promise<Store> {
    if (!Number.isInteger(options.vbuckets) || options.vbuckets < 1 || options.vbuckets > 1024) {
      throw new RangeError(`vbuckets must be 1..1024, got ${options.vbuckets}`);
    }
    const clock = options.clock ?? { now: Date.now };
    const random = options.random ?? defaultRandom;
    const cas = new CasClock(() => clock.now());
    const recovered = options.dataDir
      ? DurableStorage.readMeta(options.dataDir)
      : { clean: true, metas: new Map() };
    const vbuckets: VBucket[] = [];
    const historyPerVBucket =
      options.historyBytes === undefined
        ? Math.max(1024 * 1024, Math.floor(DEFAULT_HISTORY_BYTES / options.vbuckets))
        : Math.floor(options.historyBytes / options.vbuckets);
    for (let id = 0; id < options.vbuckets; id++) {
      const meta = recovered.metas.get(id) ?? { state: options.initialStates?.get(id) ?? VBucketState.Dead };
      vbuckets.push(new VBucket(id, meta, clock, random, cas, { historyBytes: historyPerVBucket }));
    }
    let durable: DurableStorage | undefined;
    let items = 0;
    if (options.dataDir) {
      durable = new DurableStorage({
        dataDir: options.dataDir,
        syncIntervalMs: options.syncIntervalMs,
        metaFileOps: options.metaFileOps,
        metaRetryBudgetMs: options.metaRetryBudgetMs,
        compactionThreshold: options.compactionThreshold,
        compactionMinBytes: options.compactionMinBytes,
        onCompaction: options.onCompaction,
        onError: options.onError,
      });
      for (const vb of vbuckets) items += durable.recoverLog(vb);
      // dcp-spec §7: an unclean restart starts a new history branch on every vBucket.
      if (!recovered.clean) for (const vb of vbuckets) vb.addFailoverEntry();
      await durable.attach(vbuckets);
    }
    return new Store(
      vbuckets,
      durable,
      { clean: recovered.clean, items },
      options.tombstonePurgeAgeSeconds ?? DEFAULT_TOMBSTONE_PURGE_AGE_SECONDS,
      options.tombstonePurgeIntervalMs ?? 60_000,
    );
  }

  get size(): number {
    return this.vbuckets.length;
  }
  get isDurable(): boolean {
    return this.durable !== undefined;
  }

  vbucket(id: number): VBucket {
    const vb = this.vbuckets[id];
    if (!vb)
      throw new StoreError(
        'DCPX_ERR_STORE_NO_VBUCKET',
        `no vbucket ${id} (store has ${this.vbuckets.length})`,
      );
    return vb;
  }

  /** Resolves once every write so far would survive a crash of this process. */
  commit(): Promise<void> {
    return this.durable ? this.durable.commit() : Promise.resolve();
  }

  /**
   * Resolves once vBucket states and failover logs so far are on disk and every state change so far
   * acts (a change to active acts only once written); rejects when a state change could not be written.
   */
  async metaSettled(): Promise<void> {
    await Promise.all(this.vbuckets.map((vb) => vb.stateDurable()));
    await this.durable?.metaSettled();
  }

  /**
   * Resolves once the metadata file holds every change so far; unlike `metaSettled`, it does not wait
   * on state changes still to act, nor fail for an earlier state write that failed.
   */
  metaWritten(): Promise<void> {
    return this.durable ? this.durable.metaSettled() : Promise.resolve();
  }

  /** Resolves once the latest state change of vBucket `id` is on disk and acts (VBucket.setState). */
  stateDurable(id: number): Promise<void> {
    return this.vbucket(id).stateDurable();
  }

  /** Bytes of a vBucket not yet fsynced (0 in memory mode). */
  unsyncedBytes(vb: number): number {
    return this.durable?.unsyncedBytes(vb) ?? 0;
  }

  /** Durable mode: compaction counters (undefined in memory mode). */
  get compactionStats(): CompactionStats | undefined {
    return this.durable?.compactionStats;
  }

  /** Durable mode: compacts vBucket `id`'s file now; resolves when done or given up. */
  async compact(id: number): Promise<void> {
    await this.durable?.compact(this.vbucket(id));
  }

  /** Resolves when no compaction is running. */
  async compactionsSettled(): Promise<void> {
    await this.durable?.compactionsSettled();
  }

  /** Durable mode: bytes of vBucket `id`'s file (0 in memory mode). */
  fileSize(id: number): number {
    return this.durable?.fileSize(id) ?? 0;
  }

  /** Writes and fsyncs everything now. */
  sync(): void {
    this.durable?.syncAll();
  }

  async close(): Promise<void> {
    clearInterval(this.purgeTimer);
    await this.durable?.close();
  }
}
