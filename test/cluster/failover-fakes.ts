import { Registry } from 'prom-client';
import {
  type Chain,
  type ClusterSettings,
  DEFAULT_SETTINGS,
  type DurabilityTopology,
  encode,
  keys,
  type ManagerCoreHandle,
  type NodeAddress,
  type NodeClusterConfig,
  NodeFencedError,
  type NodeGateway,
  type NodeRecord,
  type NodeSession,
  NodeTakeoverError,
  NodeUnreachableError,
  type ObservedState,
  type ReplicationStatus,
  type ReplicationTopology,
  startManagerCore,
  type TakeoverOutcome,
  type VBucketInfo,
} from '../../src/cluster/index.js';
import type { Compare, MetadataStore, TxnOp, TxnResult } from '../../src/cluster/metadata/types.js';
import { silentLogger } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';

/**
 * An in-memory storage node as the manager sees it through the NodeGateway: per vBucket a state, a high
 * seqno and a failover-log length; the replication topology it was given; the highest epoch it saw (a
 * lower one is refused as a real node would). `up = false` makes every call fail as unreachable.
 */
export class FakeNode {
  up = true;
  epoch = 0;
  /** The process identity (bootId): change it to model a restart. */
  boot = 'boot-1';
  states: ObservedState[];
  seqnos: bigint[];
  /** High prepared seqno per vBucket (sync writes; 0 when none). */
  preparedSeqnos: bigint[];
  /** The durability topology each vBucket was last given with a SET_VBUCKET (undefined: never). */
  topologies: (DurabilityTopology | undefined)[];
  /** Failover-log entries per vBucket (a promotion to active adds one). */
  failoverEntries: number[];
  topology: ReplicationTopology | undefined;
  /** vBuckets whose takeover by this node fails (the source stays active). */
  readonly failTakeovers = new Set<number>();
  /** vBuckets whose takeover by this node happens but is answered with an unsettled outcome. */
  readonly unsettledTakeovers = new Set<number>();
  readonly takeovers: { vb: number; source: NodeAddress; epoch: number }[] = [];
  readonly calls: string[] = [];

  constructor(
    readonly address: NodeAddress,
    vbuckets: number,
    private readonly cluster: FakeCluster,
  ) {
    this.states = Array.from({ length: vbuckets }, () => 'dead' as ObservedState);
    this.seqnos = Array.from({ length: vbuckets }, () => 0n);
    this.preparedSeqnos = Array.from({ length: vbuckets }, () => 0n);
    this.topologies = Array.from({ length: vbuckets }, () => undefined);
    this.failoverEntries = Array.from({ length: vbuckets }, () => 1);
  }

  check(what: string, epoch?: number): void {
    this.calls.push(what);
    if (!this.up) throw new NodeUnreachableError(this.address, `${what}: connection refused (fake)`);
    if (epoch === undefined) return;
    if (epoch < this.epoch) throw new NodeFencedError(this.address, epoch);
    this.epoch = epoch;
  }

  setState(vb: number, state: ObservedState): void {
    if (state === 'active' && this.states[vb] !== 'active')
      this.failoverEntries[vb] = (this.failoverEntries[vb] ?? 0) + 1;
    this.states[vb] = state;
  }

  session(): NodeSession {
    const node = this;
    const cluster = this.cluster;
    return {
      address: node.address,
      async vbucketCount() {
        node.check('vbucketCount');
        return node.states.length;
      },
      async vbucketStates() {
        node.check('vbucketStates');
        return [...node.states];
      },
      async bootId() {
        node.check('bootId');
        return node.boot;
      },
      async vbucketInfo(): Promise<VBucketInfo[]> {
        node.check('vbucketInfo');
        return node.states.map((state, vb) => ({
          state,
          highSeqno: node.seqnos[vb] ?? 0n,
          highPreparedSeqno: node.preparedSeqnos[vb] ?? 0n,
        }));
      },
      async setClusterConfig(config: NodeClusterConfig) {
        node.check('setClusterConfig', config.epoch);
      },
      async setVBucketState(vb: number, state: ObservedState, epoch: number, topology?: DurabilityTopology) {
        node.check(`setVBucketState ${vb} ${state}`, epoch);
        node.setState(vb, state);
        if (topology !== undefined) node.topologies[vb] = topology;
      },
      async deleteVBucket(vb: number, epoch: number) {
        node.check(`deleteVBucket ${vb}`, epoch);
        node.states[vb] = 'dead';
        node.seqnos[vb] = 0n;
      },
      async setReplication(topology: ReplicationTopology, epoch: number) {
        node.check('setReplication', epoch);
        node.topology = topology;
      },
      async replicationStatus(): Promise<ReplicationStatus> {
        node.check('replicationStatus');
        const sources: Record<NodeAddress, { wanted: number[]; open: number[] }> = {};
        for (const [source, vbs] of Object.entries(node.topology ?? {})) {
          sources[source] = { wanted: [...vbs], open: [...vbs] };
        }
        return { epoch: node.epoch, sources, itemsReceived: 0 };
      },
      async takeover(vb: number, source: NodeAddress, epoch: number): Promise<TakeoverOutcome> {
        node.check(`takeover ${vb} from ${source}`, epoch);
        node.takeovers.push({ vb, source, epoch });
        const from = cluster.node(source);
        if (node.failTakeovers.has(vb) || !from?.up) {
          throw new NodeTakeoverError(node.address, vb, 'the source stayed active (fake)');
        }
        node.seqnos[vb] = from.seqnos[vb] ?? 0n;
        from.states[vb] = 'dead';
        node.setState(vb, 'active');
        if (node.unsettledTakeovers.has(vb)) {
          throw new NodeTakeoverError(node.address, vb, 'outcome unknown (fake)', false);
        }
        return { attempts: 1, ms: 1 };
      },
      async close() {},
    };
  }
}

export class FakeCluster implements NodeGateway {
  readonly nodes = new Map<NodeAddress, FakeNode>();

  constructor(readonly vbuckets: number) {}

  add(address: NodeAddress): FakeNode {
    const node = new FakeNode(address, this.vbuckets, this);
    this.nodes.set(address, node);
    return node;
  }

  node(address: NodeAddress): FakeNode | undefined {
    return this.nodes.get(address);
  }

  get(address: NodeAddress): FakeNode {
    const node = this.nodes.get(address);
    if (!node) throw new Error(`no fake node ${address}`);
    return node;
  }

  async open(address: NodeAddress): Promise<NodeSession> {
    const node = this.nodes.get(address);
    if (!node?.up) throw new NodeUnreachableError(address, 'connect ECONNREFUSED (fake)');
    return node.session();
  }

  /** Sets every node's states to the map (heads active, replicas replica, others dead). */
  applyMap(chains: readonly Chain[]): void {
    for (const node of this.nodes.values()) {
      chains.forEach((chain, vb) => {
        const at = chain.indexOf(node.address);
        node.states[vb] = at === 0 ? 'active' : at > 0 ? 'replica' : 'dead';
      });
    }
  }

  /**
   * What must hold once the manager converged, for the members (nodes not failed): each chain head is the
   * one active copy among them, every other chain member a replica, and each replica's topology streams
   * the vBucket from the head.
   */
  problems(chains: readonly Chain[], members: readonly NodeAddress[]): string[] {
    const problems: string[] = [];
    chains.forEach((chain, vb) => {
      const actives = members.filter((m) => this.get(m).states[vb] === 'active');
      const head = chain[0] ?? null;
      if (head === null) {
        if (actives.length > 0) problems.push(`vb ${vb}: no head, active on ${actives}`);
        return;
      }
      if (actives.length !== 1 || actives[0] !== head) {
        problems.push(`vb ${vb}: head ${head}, actives ${actives.join(',') || 'none'}`);
      }
      for (const replica of chain.slice(1)) {
        if (replica === null) continue;
        if (this.get(replica).states[vb] !== 'replica') problems.push(`vb ${vb}: ${replica} not replica`);
        if (!(this.get(replica).topology?.[head] ?? []).includes(vb)) {
          problems.push(`vb ${vb}: ${replica} does not stream it from ${head}`);
        }
      }
    });
    return problems;
  }
}

export const addr = (i: number) => `10.0.0.${i}:11210`;

/** Seeds the metadata of an initialised cluster: members `active` (with groups), the map and settings. */
export async function seedCluster(
  store: { txn(compares: readonly Compare[], ops: readonly TxnOp[]): TxnResult | Promise<TxnResult> },
  chains: readonly Chain[],
  nodes: readonly { address: NodeAddress; group?: string | undefined; state?: NodeRecord['state'] }[],
  settings: Partial<ClusterSettings> = {},
): Promise<void> {
  const ops: TxnOp[] = [
    { type: 'put', key: keys.map, value: encode({ vbuckets: chains.length, chains }) },
    { type: 'put', key: keys.settings, value: encode({ ...DEFAULT_SETTINGS, ...settings }) },
    { type: 'put', key: keys.configRevision, value: encode(1) },
  ];
  for (const n of nodes) {
    const record: NodeRecord = {
      state: n.state ?? 'active',
      ...(n.group !== undefined ? { group: n.group } : {}),
    };
    ops.push({ type: 'put', key: keys.node(n.address), value: encode(record) });
  }
  await store.txn([], ops);
}

/** One manager process's view of the metadata: its store client, the clock its leases read, its end. */
export interface OpenedStore {
  readonly store: MetadataStore;
  readonly clock: ManualClock;
  close(): Promise<void>;
}

export interface FakeManager {
  readonly handle: ManagerCoreHandle;
  readonly clock: ManualClock;
  readonly registry: Registry;
  readonly epoch: number;
  close(): Promise<void>;
}

/** A manager process on the metadata (a shared in-memory one, or a store it opened) with the fake gateway. */
export async function startFakeManager(
  metadata: MemoryMetadata | OpenedStore,
  gateway: NodeGateway,
  name: string,
  options: { crashAt?: string; janitorIntervalMs?: number; leaseMs?: number } = {},
): Promise<FakeManager> {
  const opened: OpenedStore =
    metadata instanceof MemoryMetadata
      ? (() => {
          const client = metadata.client();
          return { store: client, clock: new ManualClock(), close: () => client.close() };
        })()
      : metadata;
  const clock = opened.clock;
  const registry = new Registry();
  let resolveLeading!: (epoch: number) => void;
  const leading = new Promise<number>((resolve) => {
    resolveLeading = resolve;
  });
  const handle = await startManagerCore({
    name,
    httpUrl: `http://127.0.0.1:0/${name}`,
    store: opened.store,
    janitorIntervalMs: options.janitorIntervalMs ?? 60_000,
    leaseMs: options.leaseMs ?? 5_000,
    crashAt: options.crashAt,
    clock,
    log: silentLogger,
    registry,
    gateway,
    onRole: (role) => {
      if (role.leader) resolveLeading(role.epoch);
    },
  });
  const epoch = await leading;
  await handle.settled();
  return {
    handle,
    clock,
    registry,
    epoch,
    async close() {
      await handle.close();
      await opened.close();
    },
  };
}

/** A chain per vBucket: `copies` consecutive nodes of `nodes` starting at vb mod n (round robin). */
export function roundRobin(vbuckets: number, nodes: readonly NodeAddress[], copies: number): Chain[] {
  return Array.from({ length: vbuckets }, (_, vb) =>
    Array.from(
      { length: Math.min(copies, nodes.length) },
      (_, i) => nodes[(vb + i) % nodes.length] as NodeAddress,
    ),
  );
}
