import { DurabilityLevel } from '../protocol/index.js';

// The replica side of sync replication (kv_engine's PassiveDurabilityMonitor; DESIGN.md "Part 3"): the
// high prepared seqno (HPS) a replica acknowledges to the active with DCP_SEQNO_ACKNOWLEDGED. It moves
// over a received prepare only once the snapshot holding it is complete (the replica then holds a
// consistent prefix of the active's log) and, for persistToMajority, once the prepare is persisted.
// majorityAndPersistOnMaster asks persistence of the active only, as in kv_engine. Prepares move it in
// seqno order: one waiting for persistence holds back those after it.

interface Received {
  readonly seqno: bigint;
  readonly level: DurabilityLevel;
}

export class PassiveDurabilityMonitor {
  /** Prepares received and not yet counted in the HPS, in seqno order. */
  private readonly waiting: Received[] = [];
  private hps: bigint;
  /** Highest seqno whose snapshot is complete. */
  private snapshotEnd = 0n;
  private persisted: bigint;

  constructor(
    /** The HPS the replica starts from (what it held when the stream began). */
    initial: bigint,
    persisted: bigint,
    /** Called with each new HPS (the consumer sends it as DCP_SEQNO_ACKNOWLEDGED). */
    private readonly acknowledge: (preparedSeqno: bigint) => void,
  ) {
    this.hps = initial;
    this.persisted = persisted;
  }

  get highPreparedSeqno(): bigint {
    return this.hps;
  }

  /**
   * A stream starts from what the replica holds (`held`: its complete data, with its prepares in
   * flight): acknowledges the HPS of that at once when there is one (the active may be waiting for it:
   * a promoted node re-tracks prepares, a reconnected stream lost its acks).
   */
  start(held: bigint, inFlight: readonly { bySeqno: bigint; level: DurabilityLevel }[]): void {
    for (const prepare of inFlight)
      if (prepare.bySeqno > this.hps) this.prepareReceived(prepare.bySeqno, prepare.level);
    this.snapshotEnd = held;
    this.advance();
    if (this.hps > 0n) this.acknowledge(this.hps);
  }

  /** A DCP_PREPARE was applied at `seqno`. */
  prepareReceived(seqno: bigint, level: DurabilityLevel): void {
    this.waiting.push({ seqno, level });
  }

  /** Every item of the snapshots up to `seqno` was received (its last item, SEQNO_ADVANCED, or a new marker). */
  snapshotComplete(seqno: bigint): void {
    if (seqno <= this.snapshotEnd) return;
    this.snapshotEnd = seqno;
    this.advance();
  }

  /** The replica's storage made everything up to `seqno` durable. */
  persistedUpTo(seqno: bigint): void {
    if (seqno <= this.persisted) return;
    this.persisted = seqno;
    this.advance();
  }

  private advance(): void {
    let moved = false;
    while (this.waiting.length > 0) {
      const next = this.waiting[0]!;
      if (next.seqno > this.snapshotEnd) break;
      if (next.level === DurabilityLevel.PersistToMajority && next.seqno > this.persisted) break;
      this.waiting.shift();
      if (next.seqno > this.hps) {
        this.hps = next.seqno;
        moved = true;
      }
    }
    if (moved) this.acknowledge(this.hps);
  }
}
