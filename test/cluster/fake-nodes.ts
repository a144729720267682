import type { RebalanceTimings } from '../../src/cluster/context.js';
import { type ManagerCoreHandle, type ManagerRole, startManagerCore } from '../../src/cluster/core.js';
import { encode, keys, type VBucketMap } from '../../src/cluster/layout.js';
import type { MetadataStore } from '../../src/cluster/metadata/types.js';
import {
  type DurabilityTopology,
  NodeFencedError,
  type NodeGateway,
  type NodeSession,
  NodeTakeoverError,
  NodeUnreachableError,
  type ReplicationStatus,
  type ReplicationTopology,
  type TakeoverOutcome,
  type VBucketInfo,
} from '../../src/cluster/node-gateway.js';
import type { ObservedState } from '../../src/cluster/sanify.js';
import {
  type ClusterSettings,
  type ClusterStatus,
  DEFAULT_SETTINGS,
  type NodeAddress,
  type NodeState,
} from '../../src/cluster/types.js';
import { silentLogger } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

/** What the fake nodes were asked, in order (the store's changes go in too when a test wires them). */
export type FakeEvent =
  | {
      readonly op: 'state';
      readonly node: NodeAddress;
      readonly vb: number;
      readonly state: ObservedState;
      readonly epoch: number;
      /** The durability topology sent with it (DESIGN.md Part 3), if any. */
      readonly topology?: DurabilityTopology;
    }
  | { readonly op: 'delete'; readonly node: NodeAddress; readonly vb: number; readonly epoch: number }
  | {
      readonly op: 'replication';
      readonly node: NodeAddress;
      readonly topology: ReplicationTopology;
      readonly epoch: number;
    }
  | {
      readonly op: 'takeover';
      readonly node: NodeAddress;
      readonly vb: number;
      readonly source: NodeAddress;
      readonly epoch: number;
    }
  | { readonly op: 'store'; readonly key: string; readonly value?: unknown };

interface FakeVBucket {
  state: ObservedState;
  seqno: bigint;
  /** High prepared seqno (sync writes); 0 when unset. */
  prepared?: bigint;
  /** The durability topology the copy was last given (kept across state changes, as a node does). */
  topology?: DurabilityTopology;
}

/**
 * An in-memory storage node with a replication agent: vBucket states and high seqnos, the topology it
 * follows (a replica copy catches up from its source whenever the node is read), takeovers that flip the
 * states; and the faults a test sets: unreachable, stalled replication per vBucket, failing or hanging
 * takeovers.
 */
export class FakeNode {
  readonly vbs: (FakeVBucket | undefined)[];
  topology: ReplicationTopology = {};
  epoch = 0;
  reachable = true;
  /** vBuckets whose incoming replication makes no progress. */
  readonly stalled = new Set<number>();
  /** Items a copy catches up per read (undefined: all at once). */
  step: bigint | undefined;
  /** Takeovers of these vBuckets fail (NodeTakeoverError) this many more times. */
  readonly takeoverFailures = new Map<number, number>();
  /** While set, takeovers wait for `releaseTakeovers()`. */
  hangTakeovers = false;
  private released: (() => void)[] = [];

  constructor(
    readonly address: NodeAddress,
    vbuckets: number,
  ) {
    this.vbs = Array.from({ length: vbuckets }, () => undefined);
  }

  releaseTakeovers(): void {
    this.hangTakeovers = false;
    for (const r of this.released.splice(0)) r();
  }

  waitRelease(): Promise<void> {
    return new Promise((resolve) => this.released.push(resolve));
  }
}

export class FakeCluster implements NodeGateway {
  readonly nodes = new Map<NodeAddress, FakeNode>();
  readonly events: FakeEvent[] = [];
  /** vBuckets that were seen with two actives at once (must stay empty). */
  readonly doubleActives = new Set<number>();

  constructor(
    addresses: readonly NodeAddress[],
    readonly vbuckets: number,
  ) {
    for (const a of addresses) this.nodes.set(a, new FakeNode(a, vbuckets));
  }

  node(address: NodeAddress): FakeNode {
    const node = this.nodes.get(address);
    if (!node) throw new Error(`no fake node ${address}`);
    return node;
  }

  add(address: NodeAddress): FakeNode {
    const node = new FakeNode(address, this.vbuckets);
    this.nodes.set(address, node);
    return node;
  }

  /** Sets the nodes to a map: heads active, replicas replica, each with `seqno` items. */
  place(map: VBucketMap, seqno = 10n): void {
    map.chains.forEach((chain, vb) => {
      chain.forEach((n, i) => {
        if (n !== null) this.node(n).vbs[vb] = { state: i === 0 ? 'active' : 'replica', seqno };
      });
    });
  }

  /** The nodes holding `vb` active. */
  actives(vb: number): NodeAddress[] {
    return [...this.nodes.values()].filter((n) => n.vbs[vb]?.state === 'active').map((n) => n.address);
  }

  /** A client write to `vb` (on its active); the seqno it got, or undefined when no node is active. */
  write(vb: number): bigint | undefined {
    const actives = this.actives(vb);
    if (actives.length > 1) this.doubleActives.add(vb);
    const active = actives[0];
    if (active === undefined) return undefined;
    const copy = this.node(active).vbs[vb] as FakeVBucket;
    copy.seqno += 1n;
    return copy.seqno;
  }

  /** Every replica copy streams from its topology source (the source must be active and reachable). */
  sync(): void {
    for (const node of this.nodes.values()) {
      if (!node.reachable) continue;
      for (const [source, vbs] of Object.entries(node.topology)) {
        const from = this.nodes.get(source);
        if (!from?.reachable) continue;
        for (const vb of vbs) {
          const src = from.vbs[vb];
          const dst = node.vbs[vb];
          if (src?.state !== 'active' || !dst || dst.state === 'active' || node.stalled.has(vb)) continue;
          if (dst.seqno >= src.seqno) continue;
          const next = node.step === undefined ? src.seqno : dst.seqno + node.step;
          dst.seqno = next < src.seqno ? next : src.seqno;
        }
      }
    }
    for (let vb = 0; vb < this.vbuckets; vb++) if (this.actives(vb).length > 1) this.doubleActives.add(vb);
  }

  async open(address: NodeAddress): Promise<NodeSession> {
    const node = this.nodes.get(address);
    if (!node?.reachable) throw new NodeUnreachableError(address, 'connection refused');
    return new FakeSession(this, node);
  }
}

class FakeSession implements NodeSession {
  readonly address: NodeAddress;
  constructor(
    private readonly cluster: FakeCluster,
    private readonly node: FakeNode,
  ) {
    this.address = node.address;
  }

  private check(epoch?: number): void {
    if (!this.node.reachable) throw new NodeUnreachableError(this.address, 'timed out');
    if (epoch === undefined) return;
    if (epoch < this.node.epoch) throw new NodeFencedError(this.address, epoch);
    this.node.epoch = epoch;
  }

  async vbucketCount(): Promise<number> {
    this.check();
    return this.node.vbs.length;
  }

  async vbucketStates(): Promise<ObservedState[]> {
    this.check();
    this.cluster.sync();
    const states: ObservedState[] = [];
    this.node.vbs.forEach((v, vb) => {
      if (v) states[vb] = v.state;
    });
    states.length = this.node.vbs.length;
    return states;
  }

  async vbucketInfo(): Promise<VBucketInfo[]> {
    this.check();
    this.cluster.sync();
    const rows: VBucketInfo[] = [];
    this.node.vbs.forEach((v, vb) => {
      if (v) rows[vb] = { state: v.state, highSeqno: v.seqno, highPreparedSeqno: v.prepared ?? 0n };
    });
    return rows;
  }

  async setClusterConfig(config: { epoch: number }): Promise<void> {
    this.check(config.epoch);
  }

  async setVBucketState(
    vb: number,
    state: ObservedState,
    epoch: number,
    topology?: DurabilityTopology,
  ): Promise<void> {
    this.check(epoch);
    this.cluster.sync();
    const copy = this.node.vbs[vb] ?? { state, seqno: 0n };
    copy.state = state;
    if (topology !== undefined) copy.topology = topology;
    this.node.vbs[vb] = copy;
    this.cluster.events.push({
      op: 'state',
      node: this.address,
      vb,
      state,
      epoch,
      ...(topology !== undefined ? { topology } : {}),
    });
    this.cluster.sync();
  }

  async deleteVBucket(vb: number, epoch: number): Promise<void> {
    this.check(epoch);
    this.node.vbs[vb] = undefined;
    this.cluster.events.push({ op: 'delete', node: this.address, vb, epoch });
  }

  async setReplication(topology: ReplicationTopology, epoch: number): Promise<void> {
    this.check(epoch);
    this.cluster.sync();
    this.node.topology = topology;
    this.cluster.events.push({ op: 'replication', node: this.address, topology, epoch });
  }

  async replicationStatus(): Promise<ReplicationStatus> {
    this.check();
    const sources: Record<NodeAddress, { wanted: number[]; open: number[] }> = {};
    for (const [s, vbs] of Object.entries(this.node.topology))
      sources[s] = { wanted: [...vbs], open: [...vbs] };
    return { epoch: this.node.epoch, sources, itemsReceived: 0 };
  }

  async takeover(vb: number, source: NodeAddress, epoch: number): Promise<TakeoverOutcome> {
    this.check(epoch);
    this.cluster.events.push({ op: 'takeover', node: this.address, vb, source, epoch });
    if (this.node.hangTakeovers) await this.node.waitRelease();
    const failures = this.node.takeoverFailures.get(vb) ?? 0;
    if (failures > 0) {
      this.node.takeoverFailures.set(vb, failures - 1);
      throw new NodeTakeoverError(this.address, vb, 'the source is active again');
    }
    this.cluster.sync();
    const from = this.cluster.nodes.get(source);
    const src = from?.vbs[vb];
    const dst = this.node.vbs[vb];
    if (!from?.reachable || !src || src.state !== 'active') {
      throw new NodeTakeoverError(this.address, vb, `${source} is not active`);
    }
    if (!dst || !(this.node.topology[source] ?? []).includes(vb)) {
      throw new NodeTakeoverError(this.address, vb, `no stream of vb ${vb} from ${source}`);
    }
    // the takeover stream: the source goes dead once the new owner has every item
    src.state = 'dead';
    dst.seqno = src.seqno;
    dst.state = 'active';
    return { attempts: 1, ms: 0 };
  }

  async close(): Promise<void> {}
}

export const FAST_REBALANCE: Partial<RebalanceTimings> = { pollMs: 2 };

export interface FakeManager {
  readonly handle: ManagerCoreHandle;
  readonly clock: ManualClock;
  readonly leading: Promise<number>;
}

export async function startFakeManager(
  name: string,
  store: MetadataStore,
  gateway: NodeGateway,
  options: { crashAt?: string; clock?: ManualClock; rebalance?: Partial<RebalanceTimings> } = {},
): Promise<FakeManager> {
  const clock = options.clock ?? new ManualClock();
  let resolveLeading!: (epoch: number) => void;
  const leading = new Promise<number>((resolve) => {
    resolveLeading = resolve;
  });
  const handle = await startManagerCore({
    name,
    httpUrl: `http://127.0.0.1:0/${name}`,
    store,
    janitorIntervalMs: 5_000,
    leaseMs: 5_000,
    crashAt: options.crashAt,
    clock,
    log: silentLogger,
    gateway,
    rebalance: { ...FAST_REBALANCE, ...options.rebalance },
    onRole: (role: ManagerRole) => {
      if (role.leader) resolveLeading(role.epoch);
    },
  });
  return { handle, clock, leading };
}

/** Writes an initialised cluster straight into the store: node records, map, settings. */
export async function seedCluster(
  store: MetadataStore,
  nodes: Readonly<Record<NodeAddress, NodeState>>,
  map: VBucketMap,
  settings: Partial<ClusterSettings> = {},
): Promise<void> {
  await store.txn(
    [],
    [
      ...Object.entries(nodes).map(([a, state]) => ({
        type: 'put' as const,
        key: keys.node(a),
        value: encode({ state }),
      })),
      { type: 'put', key: keys.map, value: encode(map) },
      { type: 'put', key: keys.settings, value: encode({ ...DEFAULT_SETTINGS, ...settings }) },
      { type: 'put', key: keys.configRevision, value: encode(1) },
    ],
  );
}

/**
 * What a converged cluster looks like on the fake nodes: no marker, no target; every vBucket's only
 * active copy (among all nodes) is its chain head; every replica in the chain holds a replica copy.
 */
export function fakeConvergence(status: ClusterStatus, cluster: FakeCluster): string[] {
  const problems: string[] = [];
  if (status.unfinishedOperation) problems.push(`marker left: ${JSON.stringify(status.unfinishedOperation)}`);
  if (status.rebalance) problems.push(`rebalance left: ${JSON.stringify(status.rebalance)}`);
  status.map.forEach((chain, vb) => {
    const actives = cluster.actives(vb);
    if (actives.length !== 1 || actives[0] !== chain[0]) {
      problems.push(`vb ${vb}: map head ${chain[0]}, actives ${actives.join(',') || 'none'}`);
    }
    for (const replica of chain.slice(1)) {
      const state = replica === null ? undefined : cluster.nodes.get(replica)?.vbs[vb]?.state;
      if (replica !== null && state !== 'replica') {
        problems.push(`vb ${vb}: ${replica} should hold a replica, holds ${state}`);
      }
    }
  });
  return problems;
}
