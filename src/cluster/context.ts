import type { Clock, Logger } from '../protocol/index.js';
import type { JanitorMemory } from './janitor.js';
import { type ClusterSnapshot, encode, keys } from './layout.js';
import type { Compare, MetadataStore, TxnOp } from './metadata/types.js';
import type { ManagerMetrics } from './metrics.js';
import type { NodeGateway } from './node-gateway.js';
import type { CrashPoints } from './steps.js';
import type { LeaderTerm } from './term.js';
import type { RebalanceProgress } from './types.js';

/** A rebalance running in the background of this term (src/cluster/rebalance/runner.ts). */
export interface RunningRebalance {
  readonly opId: string;
  progress(): RebalanceProgress;
  /**
   * Stops it (moves before their takeover abandoned), clears the target map and marker and records the
   * result `refused: stopped: <reason>`; resolves within the stop bound (10 s on the context's clock).
   */
  stop(reason: string): Promise<void>;
  /** The term ended: stop acting at once, writing nothing more. */
  halt(reason: string): void;
  /** Resolves when it has ended (finished, refused, stopped or halted). */
  readonly ended: Promise<void>;
}

/** Timings of a rebalance (ManagerCoreOptions.rebalance; tests shorten the poll). */
export interface RebalanceTimings {
  /** How often a move polls its new copies' seqnos (real time). */
  readonly pollMs: number;
  /** No seqno progress this long (context clock) = stuck (reported). */
  readonly stuckMs: number;
  /** No seqno progress this long (context clock) fails the move (retried in a later round). */
  readonly moveTimeoutMs: number;
  /** Given to the new head's takeover. */
  readonly takeoverDeadlineMs: number;
  /** stop-rebalance waits this long (context clock) for moves in their takeover before clearing. */
  readonly stopWaitMs: number;
  /** Rounds of moves: the moves left after a round (failed ones) are retried from the stored map. */
  readonly rounds: number;
}

export const REBALANCE_TIMINGS: RebalanceTimings = {
  pollMs: 50,
  stuckMs: 60_000,
  moveTimeoutMs: 600_000,
  takeoverDeadlineMs: 4_000,
  stopWaitMs: 8_000,
  rounds: 3,
};

/**
 * The term's rebalance slot: at most one rebalance runs per term, outside `term.exclusive` (janitor rounds
 * pause while it runs; the rebalancer owns the replication topology meanwhile).
 */
export class RebalanceSlot {
  current: RunningRebalance | undefined;
  constructor(
    readonly timings: RebalanceTimings = REBALANCE_TIMINGS,
    /** Called when a rebalance of this term ended (the core runs a janitor round). */
    readonly onEnded: () => void = () => {},
  ) {}
}

/** What operations and the janitor work with under one leadership tenure. */
export interface LeaderContext {
  readonly term: LeaderTerm;
  readonly store: MetadataStore;
  readonly gateway: NodeGateway;
  readonly crash: CrashPoints;
  readonly log: Logger;
  readonly metrics: ManagerMetrics;
  /** The core's clock (stuck detection, ETA, the stop bound). */
  readonly clock: Clock;
  /** This term's background rebalance, if one runs. */
  readonly rebalance: RebalanceSlot;
  /** The core's janitor memory (a rebalance's own janitor rounds share what heads were told). */
  readonly janitorMemory?: JanitorMemory;
}

/** Compare: the key does not exist. */
export function absent(key: string): Compare {
  return { key, target: 'version', op: '==', revision: 0 };
}

/** Compare: the key holds exactly these bytes (the marker compare: it carries the writer's epoch). */
export function holds(key: string, value: Uint8Array): Compare {
  return { key, target: 'value', op: '==', value };
}

/** Compare: the key was not changed since the snapshot (or is still absent). */
export function unchangedSince(snapshot: ClusterSnapshot, key: string): Compare {
  return { key, target: 'modRevision', op: '==', revision: snapshot.entries.get(key)?.modRevision ?? 0 };
}

export function put(key: string, value: unknown): TxnOp {
  return { type: 'put', key, value: encode(value) };
}

export function putBytes(key: string, value: Uint8Array): TxnOp {
  return { type: 'put', key, value };
}

export function del(key: string): TxnOp {
  return { type: 'delete', key };
}

/** The op that bumps the config revision (every change of nodes or map carries it). */
export function bumpConfig(snapshot: ClusterSnapshot): TxnOp {
  return put(keys.configRevision, snapshot.configRevision + 1);
}
