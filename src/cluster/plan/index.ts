/**
 * The pure planning functions of rebalance and failover (issue 12), property-tested with fast-check:
 * - `vbucket-map.ts`: the map planner (ns_server's mb_map / vbmap constraints);
 * - `moves.ts`: the moves from a current map to a target;
 * - `move-scheduler.ts`: which moves run now (vbucket_move_scheduler: per-node backfill caps, busiest
 *   node first);
 * - `replication-topology.ts`: the replica streams into each node for a map plus the moves in flight;
 * - `durability-topology.ts`: the chain a vBucket's active counts its durability majority over.
 * Signatures are fixed here so the engine can be built against them.
 */
import type { Chain, VBucketMap } from '../layout.js';
import type { ReplicationTopology } from '../node-gateway.js';
import type { NodeAddress } from '../types.js';

export interface PlanNode {
  readonly address: NodeAddress;
  /** Server group (rack); copies of one vBucket go to distinct groups when there are >= R+1 groups. */
  readonly group?: string;
}

export interface PlanInput {
  /** The nodes the map is planned over (in the order the caller lists them; the result must not depend on it beyond ties). */
  readonly nodes: readonly PlanNode[];
  readonly vbuckets: number;
  /** R: replica copies per vBucket (chains have min(R+1, nodes) copies). */
  readonly replicas: number;
  /** The current map: the plan keeps as many of its copies in place as the constraints allow. */
  readonly current?: VBucketMap | undefined;
}

/** One vBucket move: from the current chain to the target chain (they differ). */
export interface Move {
  readonly vb: number;
  readonly from: Chain;
  readonly to: Chain;
}

/** A new copy being built during a move: a replica stream from the old active into `target`. */
export interface CopyInFlight {
  readonly vb: number;
  readonly source: NodeAddress;
  readonly target: NodeAddress;
}

export interface MoveProgress {
  readonly done: number;
  readonly total: number;
  readonly nodes: Readonly<Record<NodeAddress, { readonly done: number; readonly total: number }>>;
}

export interface SchedulerLimits {
  /** Backfills in flight per node (ns_server rebalanceMovesPerNode, default 4). */
  readonly backfillsPerNode: number;
  /** Moves in flight per node, backfilled or not (ns_server 64). */
  readonly movesPerNode?: number;
}

export { durabilityTopology, topologyKey } from './durability-topology.js';
export { DEFAULT_MOVES_PER_NODE, MoveScheduler } from './move-scheduler.js';
export { backfillNodes, movesBetween } from './moves.js';
export { replicationTopology } from './replication-topology.js';
export {
  copiesLowerBound,
  copiesMoved,
  isBalanced,
  type MapStats,
  mapStats,
  planMap,
} from './vbucket-map.js';
export type { Chain, ReplicationTopology, VBucketMap };
