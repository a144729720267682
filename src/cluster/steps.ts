/**
 * Named crash points: one after every persisted step (a metadata txn, or a state pushed to a node) of each
 * topology operation and of the janitor. `--crash-at STEP` stops the manager right there, so tests can
 * crash it at every step of every operation (a loop over TOPOLOGY_STEPS) and check that the next leader's
 * janitor converges.
 */
export const TOPOLOGY_STEPS = [
  // marker + node record `joining`, one txn
  'add-node:after-marker',
  // SET_CLUSTER_CONFIG with the epoch pushed to the joining node (fences it)
  'add-node:after-node-config',
  // node `added`, map adopting the copies the node holds
  'add-node:after-map',
  // marker cleared + result recorded
  'add-node:after-clear',
  // marker + node record `leaving`
  'remove-node:after-marker',
  // SET_CLUSTER_CONFIG with the epoch pushed to the leaving node
  'remove-node:after-node-config',
  // the leaving node's copies set dead
  'remove-node:after-dead',
  // node taken out of nodes and of every chain
  'remove-node:after-map',
  // marker cleared + result recorded
  'remove-node:after-clear',
  // failover: marker written (the node record unchanged since the refusal checks)
  'failover:after-marker',
  // graceful failover: one vBucket taken over by its replica and its chain stored
  'failover:after-takeover',
  // topologies without the node pushed to the survivors (its own emptied, its actives set dead)
  'failover:after-stop-replication',
  // one txn: map with the promoted survivors + node `failed` with `held` (+ the auto-failover count)
  'failover:after-map',
  // survivors' states set to the new map (new heads active)
  'failover:after-promote',
  // topologies of the new map pushed (replicas follow the new heads)
  'failover:after-topology',
  // marker cleared + result recorded
  'failover:after-clear',
  // recover: marker written
  'recover:after-marker',
  // node `active` again and appended to the chains of its held vBuckets that lack a copy
  'recover:after-map',
  // the members' states set to the map (the node's copies replica)
  'recover:after-states',
  // marker cleared + result recorded
  'recover:after-clear',
  // init: marker + node records `active` + settings + the planned map, one txn
  'init:after-marker',
  // init: every node's vBucket states set to the map (actives, then replicas)
  'init:after-states',
  // init: marker cleared + result recorded
  'init:after-clear',
  // the janitor repaired an unfinished operation
  'janitor:after-repair',
  // the janitor stored a fixed map
  'janitor:after-map',
  // the janitor set node states to match the map
  'janitor:after-states',
] as const;

/** The crash points of a rebalance (part 2), apart from part 1's list so its loops stay as they are. */
export const REBALANCE_STEPS = [
  // marker + target map, one txn, before any move
  'rebalance:after-marker',
  // a move's new copies set replica and the topology with them in flight pushed
  'rebalance:after-copies',
  // a move's takeover done by the new head (the map not yet updated)
  'rebalance:after-takeover',
  // a move's chain stored in the map (topologies not yet re-pointed, old copies not yet deleted)
  'rebalance:after-move-map',
  // every move done; the ejected nodes' streams stopped and copies set dead
  'rebalance:after-eject',
  // marker and target cleared, nodes placed/ejected, result recorded
  'rebalance:after-clear',
  // a stopped rebalance's marker and target cleared, result `refused: stopped` recorded
  'stop-rebalance:after-clear',
] as const;

/** Every crash point (`--crash-at` accepts any). */
export const CRASH_STEPS = [...TOPOLOGY_STEPS, ...REBALANCE_STEPS] as const;

export type TopologyStep = (typeof CRASH_STEPS)[number];

export function isTopologyStep(step: string): step is TopologyStep {
  return (CRASH_STEPS as readonly string[]).includes(step);
}

/** Thrown at the crash point in in-process mode: the manager stops acting as if its process had died. */
export class SimulatedCrash extends Error {
  constructor(readonly step: TopologyStep) {
    super(`simulated crash at ${step}`);
    this.name = 'SimulatedCrash';
  }
}

/**
 * The crash hook. In process mode (the CLI's `--crash-at`) it exits with status 137, as kill -9 would
 * leave it; otherwise it throws SimulatedCrash and the core abandons everything without another write.
 */
export class CrashPoints {
  constructor(
    private readonly at: TopologyStep | undefined,
    private readonly processMode: boolean,
    private readonly onCrash: (step: TopologyStep) => void,
  ) {}

  static create(at: string | undefined, processMode: boolean, onCrash: (step: TopologyStep) => void) {
    if (at !== undefined && !isTopologyStep(at)) {
      throw new Error(`unknown crash step "${at}"; one of: ${CRASH_STEPS.join(', ')}`);
    }
    return new CrashPoints(at, processMode, onCrash);
  }

  hit(step: TopologyStep): void {
    if (step !== this.at) return;
    if (this.processMode) process.exit(137);
    this.onCrash(step);
    throw new SimulatedCrash(step);
  }
}
