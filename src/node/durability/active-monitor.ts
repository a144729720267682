import { type DurabilityLevel, DurabilityLevel as Level, type ReadClock } from '../../protocol/index.js';
import type { Item } from '../../store/index.js';

/**
 * The first replication chain of a vBucket's topology: `[active, replica...]`, `null` for a replica slot
 * with no node (DESIGN.md Part 3 "Topology").
 */
export type Chain = readonly (string | null)[];

/** The vBucket side of a monitor: completes a prepare at the next seqno (VBucket.commit / abort). */
export interface DurabilityTarget {
  commit(preparedSeqno: bigint): Item;
  abort(preparedSeqno: bigint): Item;
}

/**
 * How a tracked prepare ended: committed (the committed version), aborted at its timeout (the abort
 * marker), or `ended` when the monitor stopped first (the vBucket stopped being active, or the store
 * refused the completion): neither outcome is known to this node.
 */
export type Resolution =
  | { readonly outcome: 'committed'; readonly item: Item }
  | { readonly outcome: 'aborted'; readonly item: Item }
  | { readonly outcome: 'ended'; readonly reason: string };

export interface ActiveMonitorOptions {
  target: DurabilityTarget;
  clock: ReadClock;
  /** The topology at creation; undefined = none yet (durable writes are impossible). */
  chain?: Chain;
  /** Called when the store throws on a completion (the prepare is dropped and its writer told `ended`). */
  onError?: (error: unknown, preparedSeqno: bigint) => void;
}

interface Tracked {
  readonly seqno: bigint;
  readonly key: Buffer;
  readonly level: DurabilityLevel;
  /** Clock time after which it aborts; null = never (re-tracked after a promotion). */
  readonly deadline: number | null;
  readonly resolve: (resolution: Resolution) => void;
}

/** floor(n/2)+1 over the chain's length, `null` slots counted (kv_engine's rule). */
export function majorityOf(chain: Chain): number {
  return Math.floor(chain.length / 2) + 1;
}

/** A chain can meet a majority when it names at least that many nodes. */
export function chainCanMeetMajority(chain: Chain | undefined): boolean {
  if (!chain || chain.length === 0) return false;
  return chain.filter((node) => node !== null).length >= majorityOf(chain);
}

/**
 * kv_engine's ActiveDurabilityMonitor for one active vBucket (DESIGN.md Part 3 "Durability monitors").
 * It holds the tracked prepares in seqno order and, per node, the highest prepared seqno it acknowledged.
 * A prepare is satisfied when a majority of the first chain (`chain[0]` is this node, the active) has it:
 * the active by being the active for `majority`, by its persisted seqno for the persist levels, where it
 * must be among them. Satisfied prepares commit in seqno order (a later one waits for the earlier ones
 * to complete); a prepare whose deadline passes before it commits is aborted. Pure: time is read from the
 * injected clock, and `processTimeouts()` is called by whoever owns the timer.
 */
export class ActiveDurabilityMonitor {
  private readonly tracked: Tracked[] = [];
  /** Acknowledged prepared seqnos by node name, kept across topologies for the nodes still named. */
  private readonly acks = new Map<string, bigint>();
  private chain: Chain | undefined;
  private persistedSeqno = 0n;
  private ended = false;
  /** Keys of prepares re-tracked at promotion (no timeout) not yet committed. */
  private readonly recommits = new Map<string, number>();

  constructor(private readonly options: ActiveMonitorOptions) {
    this.chain = options.chain;
  }

  /** The current first chain, if any. */
  get topology(): Chain | undefined {
    return this.chain;
  }

  /** Prepares waiting, in seqno order. */
  get pending(): readonly bigint[] {
    return this.tracked.map((t) => t.seqno);
  }

  /** The earliest deadline of a tracked prepare (for the timer); undefined when none has one. */
  get nextDeadline(): number | undefined {
    let next: number | undefined;
    for (const t of this.tracked)
      if (t.deadline !== null && (next === undefined || t.deadline < next)) next = t.deadline;
    return next;
  }

  /** New durable writes can be accepted: a topology whose first chain can make a majority. */
  get possible(): boolean {
    return !this.ended && chainCanMeetMajority(this.chain);
  }

  /** A prepare of `key` re-tracked at promotion has not committed yet (SYNC_WRITE_RE_COMMIT_IN_PROGRESS). */
  isRecommitting(key: Buffer): boolean {
    // the KV hot path: no re-commit in flight (the common case) costs no key string
    return this.recommits.size !== 0 && this.recommits.has(key.toString('latin1'));
  }

  /**
   * Tracks a prepare the vBucket just appended. `timeoutMs` null = never aborts (a prepare re-tracked
   * at promotion or restart: it may have been committed and acknowledged on the old active).
   */
  track(prepare: Item, timeoutMs: number | null): Promise<Resolution> {
    const sync = prepare.sync;
    if (sync?.kind !== 'prepare') throw new RangeError(`seqno ${prepare.bySeqno} is not a prepare`);
    const last = this.tracked[this.tracked.length - 1];
    if (last && last.seqno >= prepare.bySeqno)
      throw new RangeError(`prepare ${prepare.bySeqno} tracked after ${last.seqno}`);
    if (this.ended) return Promise.resolve({ outcome: 'ended', reason: 'monitor ended' });
    return new Promise<Resolution>((resolve) => {
      const deadline = timeoutMs === null ? null : this.options.clock.now() + timeoutMs;
      this.tracked.push({ seqno: prepare.bySeqno, key: prepare.key, level: sync.level, deadline, resolve });
      if (deadline === null) this.countRecommit(prepare.key, 1);
      this.evaluate();
    });
  }

  /** `node` acknowledged every prepare up to `preparedSeqno` (DCP_SEQNO_ACKNOWLEDGED). */
  ack(node: string, preparedSeqno: bigint): void {
    if (preparedSeqno <= (this.acks.get(node) ?? 0n)) return;
    this.acks.set(node, preparedSeqno);
    this.evaluate();
  }

  /** The active's own copy is persisted up to `seqno`. */
  persisted(seqno: bigint): void {
    if (seqno <= this.persistedSeqno) return;
    this.persistedSeqno = seqno;
    this.evaluate();
  }

  /**
   * A new first chain (undefined = none). Acknowledgements of nodes that left the chain are forgotten;
   * every tracked prepare is evaluated again. A chain that cannot make a majority leaves them waiting.
   */
  setTopology(chain: Chain | undefined): void {
    const before = this.chain;
    this.chain = chain;
    if (before) {
      const now = new Set(chain ?? []);
      for (const node of before) if (node !== null && !now.has(node)) this.acks.delete(node);
    }
    this.evaluate();
  }

  /** Aborts every tracked prepare whose deadline has passed, then commits what can commit. */
  processTimeouts(): void {
    if (this.ended) return;
    const now = this.options.clock.now();
    for (let i = 0; i < this.tracked.length; ) {
      const t = this.tracked[i]!;
      if (t.deadline !== null && now >= t.deadline) {
        this.tracked.splice(i, 1);
        this.complete(t, 'abort');
      } else i++;
    }
    this.evaluate();
  }

  /**
   * The vBucket stopped being active (or the node stops): every tracked prepare's writer is told `ended`
   * (SYNC_WRITE_AMBIGUOUS); the prepares stay in flight in the store for the next active to resolve.
   */
  end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    const all = this.tracked.splice(0);
    this.recommits.clear();
    for (const t of all) t.resolve({ outcome: 'ended', reason });
  }

  /** Commits satisfied prepares from the head, in seqno order. */
  private evaluate(): void {
    if (this.ended) return;
    while (this.tracked.length > 0 && this.satisfied(this.tracked[0]!)) {
      this.complete(this.tracked.shift()!, 'commit');
    }
  }

  private satisfied(t: Tracked): boolean {
    const chain = this.chain;
    if (!chain || chain.length === 0) return false;
    const persistLevel = t.level !== Level.Majority;
    const activeHas = !persistLevel || this.persistedSeqno >= t.seqno;
    if (persistLevel && !activeHas) return false;
    let count = 0;
    chain.forEach((node, i) => {
      if (node === null) return;
      if (i === 0) {
        if (activeHas) count++;
      } else if ((this.acks.get(node) ?? 0n) >= t.seqno && node !== chain[0]) count++;
    });
    return count >= majorityOf(chain);
  }

  private complete(t: Tracked, how: 'commit' | 'abort'): void {
    if (t.deadline === null) this.countRecommit(t.key, -1);
    let item: Item;
    try {
      item = how === 'commit' ? this.options.target.commit(t.seqno) : this.options.target.abort(t.seqno);
    } catch (error) {
      this.options.onError?.(error, t.seqno);
      t.resolve({ outcome: 'ended', reason: `${how} of prepare ${t.seqno} failed: ${String(error)}` });
      return;
    }
    t.resolve(how === 'commit' ? { outcome: 'committed', item } : { outcome: 'aborted', item });
  }

  private countRecommit(key: Buffer, delta: number): void {
    const k = key.toString('latin1');
    const n = (this.recommits.get(k) ?? 0) + delta;
    if (n > 0) this.recommits.set(k, n);
    else this.recommits.delete(k);
  }
}
