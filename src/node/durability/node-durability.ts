import { type Clock, type Logger, VBucketState } from '../../protocol/index.js';
import type { Item } from '../../store/index.js';
import { ActiveDurabilityMonitor, type Chain, type Resolution } from './active-monitor.js';

/** What the node's durability needs of a vBucket (the store's VBucket has all of it). */
export interface DurableVBucket {
  readonly id: number;
  readonly state: VBucketState;
  readonly persistedSeqno: bigint;
  commit(preparedSeqno: bigint): Item;
  abort(preparedSeqno: bigint): Item;
  inFlightPrepares(): Item[];
  onPersisted(listener: (seqno: bigint) => void): () => void;
  onState(listener: (state: VBucketState, previous: VBucketState) => void): () => void;
}

export interface NodeDurabilityOptions {
  vbuckets: readonly DurableVBucket[];
  clock: Clock;
  /** A sync write's timeout when its request gives none (kv_engine: 30 s). */
  defaultTimeoutMs: number;
  /** How often deadlines are checked (kv_engine's durability timeout task runs every 25 ms). */
  tickMs?: number;
  logger: Logger;
}

export const DEFAULT_DURABILITY_TIMEOUT_MS = 30_000;

/**
 * A node's sync-write side (DESIGN.md Part 3): one ActiveDurabilityMonitor per active vBucket, the
 * topology SET_VBUCKET gave each vBucket, replica acknowledgements and local persistence routed to the
 * monitors, and the one timer that aborts prepares past their deadline. Promotion (a vBucket turning
 * active) re-tracks the prepares still in flight with no timeout; leaving active ends the monitor (its
 * waiting writers are answered SYNC_WRITE_AMBIGUOUS).
 */
export class NodeDurability {
  private readonly monitors = new Map<number, ActiveDurabilityMonitor>();
  private readonly topologies = new Map<number, Chain>();
  private readonly unsubscribe: (() => void)[] = [];
  private stopTicking: (() => void) | undefined;
  private closed = false;

  constructor(private readonly options: NodeDurabilityOptions) {
    for (const vb of options.vbuckets) {
      this.unsubscribe.push(
        vb.onState((state, previous) => {
          if (state === VBucketState.Active && previous !== VBucketState.Active) this.activate(vb);
          else if (state !== VBucketState.Active && previous === VBucketState.Active) this.deactivate(vb);
        }),
        vb.onPersisted((seqno) => this.monitors.get(vb.id)?.persisted(seqno)),
      );
      if (vb.state === VBucketState.Active) this.activate(vb);
    }
  }

  get defaultTimeoutMs(): number {
    return this.options.defaultTimeoutMs;
  }

  /** The monitor of an active vBucket. */
  monitor(vbucket: number): ActiveDurabilityMonitor | undefined {
    return this.monitors.get(vbucket);
  }

  /** The topology SET_VBUCKET gave `vbucket` (kept while it is, or is becoming, active). */
  topology(vbucket: number): Chain | undefined {
    return this.topologies.get(vbucket);
  }

  setTopology(vbucket: number, chain: Chain): void {
    this.topologies.set(vbucket, chain);
    this.options.logger.info({ vb: vbucket, chain }, 'vbucket topology set');
    this.monitors.get(vbucket)?.setTopology(chain);
  }

  /** Tracks a prepare the active `vb` just appended; resolves when it commits, aborts or the monitor ends. */
  track(vb: DurableVBucket, prepare: Item, timeoutMs: number): Promise<Resolution> {
    const monitor = this.monitors.get(vb.id);
    if (!monitor) return Promise.resolve({ outcome: 'ended', reason: `vb ${vb.id} is not active` });
    const resolution = monitor.track(prepare, timeoutMs);
    // a memory-only vBucket is persisted at once (maybe before the monitor heard of the prepare)
    monitor.persisted(vb.persistedSeqno);
    this.tick();
    return resolution;
  }

  /** DCP_SEQNO_ACKNOWLEDGED from the consumer named `node` (its `consumer_name`). */
  ack(node: string, vbucket: number, preparedSeqno: bigint): void {
    this.monitors.get(vbucket)?.ack(node, preparedSeqno);
  }

  /** Ends every monitor (node stop): waiting writers are told the outcome is unknown. */
  close(): void {
    this.closed = true;
    this.stopTicking?.();
    this.stopTicking = undefined;
    for (const off of this.unsubscribe) off();
    for (const monitor of this.monitors.values()) monitor.end('node stopping');
    this.monitors.clear();
  }

  private activate(vb: DurableVBucket): void {
    if (this.closed) return;
    const monitor = new ActiveDurabilityMonitor({
      target: vb,
      clock: this.options.clock,
      chain: this.topologies.get(vb.id),
      onError: (error, seqno) =>
        this.options.logger.error(
          { vb: vb.id, seqno: String(seqno), err: String(error) },
          'sync write completion failed',
        ),
    });
    this.monitors.set(vb.id, monitor);
    // kv_engine's promotion rule: a prepare in flight may have been committed (and acknowledged) on the
    // old active, so it is never aborted; it commits once the new topology's majority has it
    const inFlight = vb.inFlightPrepares();
    for (const prepare of inFlight) void monitor.track(prepare, null);
    monitor.persisted(vb.persistedSeqno);
    if (inFlight.length > 0)
      this.options.logger.info(
        { vb: vb.id, prepares: inFlight.length },
        'promoted: re-tracking prepares in flight',
      );
  }

  private deactivate(vb: DurableVBucket): void {
    this.topologies.delete(vb.id);
    const monitor = this.monitors.get(vb.id);
    this.monitors.delete(vb.id);
    monitor?.end(`vb ${vb.id} is no longer active`);
  }

  /** Runs the deadline check while some monitor holds a prepare with a deadline. */
  private tick(): void {
    if (this.stopTicking || this.closed) return;
    this.stopTicking = this.options.clock.every(this.options.tickMs ?? 25, () => {
      let waiting = false;
      for (const monitor of this.monitors.values()) {
        monitor.processTimeouts();
        if (monitor.nextDeadline !== undefined) waiting = true;
      }
      if (!waiting) {
        this.stopTicking?.();
        this.stopTicking = undefined;
      }
    });
  }
}
