import type { LeaderContext } from '../context.js';
import { nodeConfig, readSnapshot, type VBucketMap } from '../layout.js';
import { type NodeSession, NodeUnreachableError, type VBucketInfo } from '../node-gateway.js';
import { durabilityTopology } from '../plan/durability-topology.js';
import { replicationTopology } from '../plan/replication-topology.js';
import { type ObservedState, statePlan } from '../sanify.js';
import type { NodeAddress } from '../types.js';

/**
 * The node sessions of one failover step, opened on first use; a node that does not answer is noted once
 * and left alone for the rest of the step (a failover goes on without the nodes it cannot reach: the janitor
 * finishes them when they answer). A fencing refusal still stops everything (LeaderTerm.onNode).
 */
export class Reach {
  private readonly sessions = new Map<NodeAddress, Promise<NodeSession | undefined>>();
  readonly unreachable = new Set<NodeAddress>();

  constructor(private readonly ctx: LeaderContext) {}

  session(node: NodeAddress): Promise<NodeSession | undefined> {
    let opened = this.sessions.get(node);
    if (!opened) {
      opened = this.ctx.term
        .onNode(() => this.ctx.gateway.open(node))
        .catch((error: unknown) => this.miss(node, 'open', error));
      this.sessions.set(node, opened);
    }
    return opened;
  }

  /** Runs `work` on the node's session; undefined when the node is (or turns out) unreachable. */
  async on<T>(node: NodeAddress, what: string, work: (s: NodeSession) => Promise<T>): Promise<T | undefined> {
    if (this.unreachable.has(node)) return undefined;
    const session = await this.session(node);
    if (!session) return undefined;
    try {
      return await this.ctx.term.onNode(() => work(session));
    } catch (error) {
      return this.miss(node, what, error);
    }
  }

  private miss(node: NodeAddress, what: string, error: unknown): undefined {
    if (!(error instanceof NodeUnreachableError)) throw error;
    if (!this.unreachable.has(node)) {
      this.ctx.log.warn(
        { node, what, err: error.message },
        'failover: node did not answer; going on without it',
      );
    }
    this.unreachable.add(node);
    return undefined;
  }

  async close(): Promise<void> {
    const sessions = await Promise.all(this.sessions.values());
    await Promise.all(sessions.map((s) => s?.close()));
  }
}

/** Gives each member its incoming replication for `map` (an empty one to each of `silenced`). */
export async function pushTopologies(
  ctx: LeaderContext,
  reach: Reach,
  map: VBucketMap,
  members: readonly NodeAddress[],
  silenced: readonly NodeAddress[] = [],
): Promise<void> {
  const topologies = replicationTopology(map, [], members);
  for (const node of silenced) topologies.set(node, {});
  await Promise.all(
    [...topologies].map(([node, topology]) =>
      reach.on(node, 'set replication', (s) => s.setReplication(topology, ctx.term.epoch)),
    ),
  );
}

/** Every vBucket's info on each reachable node of `nodes`. */
export async function readInfo(
  reach: Reach,
  nodes: readonly NodeAddress[],
): Promise<Map<NodeAddress, VBucketInfo[]>> {
  const infos = new Map<NodeAddress, VBucketInfo[]>();
  await Promise.all(
    nodes.map(async (node) => {
      const info = await reach.on(node, 'vbucket info', (s) => s.vbucketInfo());
      if (info) infos.set(node, info);
    }),
  );
  return infos;
}

export interface ApplyStatesOptions {
  /** R: the durability topology's slots (settings.replicas). */
  readonly replicas: number;
  /** Only these vBuckets (all when absent). */
  readonly only?: ReadonlySet<number>;
  /**
   * vBuckets whose chain changed: their head is sent its new durability topology even when it stays
   * active (an active→active SET_VBUCKET changes only the topology).
   */
  readonly chainChanged?: ReadonlySet<number>;
}

/**
 * Sets the states of `nodes` to match `map` (heads active, replicas replica, other live copies dead) for the
 * vBuckets in `only` (all when absent), demotions before promotions per vBucket (sanify `statePlan`). A
 * promotion of a replica starts a new failover-log entry on the node (dcp-spec §7). Every head set active,
 * and the head of every vBucket in `chainChanged`, gets its chain as durability topology (DESIGN.md Part 3).
 * Returns the state changes made.
 */
export async function applyStates(
  ctx: LeaderContext,
  reach: Reach,
  map: VBucketMap,
  nodes: readonly NodeAddress[],
  options: ApplyStatesOptions,
): Promise<number> {
  const { only, chainChanged, replicas } = options;
  const observed = new Map<NodeAddress, ObservedState[]>();
  for (const [node, info] of await readInfo(reach, nodes)) {
    observed.set(
      node,
      info.map((i) => i.state),
    );
  }
  let changes = 0;
  for (let vb = 0; vb < map.vbuckets; vb++) {
    if (only && !only.has(vb)) continue;
    const chain = map.chains[vb] ?? [null];
    const topology = durabilityTopology(chain, replicas);
    let headTold = false;
    let complete = true;
    for (const change of statePlan(vb, chain, observed)) {
      const done = await reach.on(change.node, 'set vbucket state', async (s) => {
        await s.setVBucketState(vb, change.to, ctx.term.epoch, change.to === 'active' ? topology : undefined);
        return true;
      });
      if (!done) {
        complete = false;
        break; // a demotion that did not happen must not be followed by a promotion
      }
      if (change.to === 'active') headTold = true;
      changes++;
    }
    const head = chain[0] ?? null;
    if (
      complete &&
      !headTold &&
      head !== null &&
      topology &&
      chainChanged?.has(vb) &&
      observed.get(head)?.[vb] === 'active'
    ) {
      await reach.on(head, 'set topology', (s) => s.setVBucketState(vb, 'active', ctx.term.epoch, topology));
    }
  }
  return changes;
}

/**
 * Gives `nodes` the cluster config of the stored map after each change, in the background and coalesced
 * (at most one push at a time, the newest map next): clients read the config in NOT_MY_VBUCKET answers and
 * pushes, so they follow each vBucket as a graceful failover moves it instead of retrying on a node that
 * still answers with the config from before.
 */
export class ConfigPushes {
  private busy: Promise<void> | undefined;
  private again = false;

  constructor(
    private readonly ctx: LeaderContext,
    private readonly reach: Reach,
    private readonly nodes: readonly NodeAddress[],
  ) {}

  /** The stored map changed. */
  changed(): void {
    if (this.busy) {
      this.again = true;
      return;
    }
    this.busy = this.run().finally(() => {
      this.busy = undefined;
    });
  }

  /** Resolves once no push is under way. */
  async settled(): Promise<void> {
    while (this.busy) await this.busy;
  }

  private async run(): Promise<void> {
    do {
      this.again = false;
      const config = nodeConfig(await readSnapshot(this.ctx.store), this.ctx.term.epoch);
      await Promise.all(
        this.nodes.map((node) =>
          this.reach.on(node, 'config', (s) => s.setClusterConfig(config)).catch(() => undefined),
        ),
      );
    } while (this.again && this.ctx.term.active);
  }
}
