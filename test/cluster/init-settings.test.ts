import { afterEach, describe, expect, it } from 'vitest';
import { type ManagerCoreHandle, startManagerCore } from '../../src/cluster/core.js';
import {
  decode,
  encode,
  keys,
  type NodeClusterConfig,
  readResult,
  readSnapshot,
} from '../../src/cluster/layout.js';
import {
  NodeFencedError,
  type NodeGateway,
  type NodeSession,
  NodeUnreachableError,
  type ReplicationStatus,
  type ReplicationTopology,
} from '../../src/cluster/node-gateway.js';
import { replicationTopology } from '../../src/cluster/plan/replication-topology.js';
import { planMap } from '../../src/cluster/plan/vbucket-map.js';
import type { ObservedState } from '../../src/cluster/sanify.js';
import { TOPOLOGY_STEPS } from '../../src/cluster/steps.js';
import {
  ClusterCallError,
  DEFAULT_SETTINGS,
  type TopologyOperationRequest,
} from '../../src/cluster/types.js';
import { silentLogger } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata, type MemoryMetadataClient } from '../helpers/memory-metadata.js';

// init and settings against an in-memory gateway: what each node is told, and what the metadata holds.

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VBS = 8;

/** One storage node as the manager sees it: states, config, epoch, replication topology. */
class FakeNode {
  states: ObservedState[];
  epoch = 0;
  config: NodeClusterConfig | undefined;
  topology: ReplicationTopology | undefined;
  reachable = true;
  /** replicationStatus() answers the streams open only after this many polls. */
  openAfterPolls = 0;
  polls = 0;
  /** Every change the node took, in order (`state vb x`, `config`, `replication`). */
  readonly log: string[] = [];

  constructor(
    readonly address: string,
    readonly vbuckets: number,
  ) {
    this.states = Array.from({ length: vbuckets }, () => 'dead');
  }

  adopt(epoch: number): void {
    if (epoch < this.epoch) throw new NodeFencedError(this.address, epoch);
    this.epoch = epoch;
  }
}

class FakeGateway implements NodeGateway {
  readonly nodes = new Map<string, FakeNode>();

  add(address: string, vbuckets = VBS): FakeNode {
    const node = new FakeNode(address, vbuckets);
    this.nodes.set(address, node);
    return node;
  }

  async open(address: string): Promise<NodeSession> {
    const node = this.nodes.get(address);
    const check = () => {
      if (!node?.reachable) throw new NodeUnreachableError(address, 'connection refused');
      return node;
    };
    check();
    return {
      address,
      vbucketCount: async () => check().vbuckets,
      vbucketStates: async () => [...check().states],
      vbucketInfo: async () =>
        check().states.map((state) => ({ state, highSeqno: 0n, highPreparedSeqno: 0n })),
      setClusterConfig: async (config) => {
        const n = check();
        n.adopt(config.epoch);
        n.config = config;
        n.log.push('config');
      },
      setVBucketState: async (vb, state, epoch) => {
        const n = check();
        n.adopt(epoch);
        n.states[vb] = state;
        n.log.push(`state ${vb} ${state}`);
      },
      deleteVBucket: async (vb, epoch) => {
        const n = check();
        n.adopt(epoch);
        n.states[vb] = 'dead';
      },
      setReplication: async (topology, epoch) => {
        const n = check();
        n.adopt(epoch);
        n.topology = topology;
        n.polls = 0;
        n.log.push('replication');
      },
      replicationStatus: async (): Promise<ReplicationStatus> => {
        const n = check();
        n.polls++;
        const open = n.polls > n.openAfterPolls;
        const sources = Object.fromEntries(
          Object.entries(n.topology ?? {}).map(([source, vbs]) => [
            source,
            { wanted: vbs, open: open ? vbs : [] },
          ]),
        );
        return { epoch: n.epoch, sources, itemsReceived: 0 };
      },
      takeover: async () => {
        throw new Error('no takeover in these tests');
      },
      close: async () => undefined,
    };
  }
}

interface Manager {
  readonly handle: ManagerCoreHandle;
  readonly client: MemoryMetadataClient;
  kill(): Promise<void>;
}

async function startManager(
  shared: MemoryMetadata,
  gateway: NodeGateway,
  name: string,
  crashAt?: string,
): Promise<Manager> {
  const client = shared.client();
  let leading!: () => void;
  const led = new Promise<void>((resolve) => {
    leading = resolve;
  });
  const handle = await startManagerCore({
    name,
    httpUrl: `http://127.0.0.1:0/${name}`,
    store: client,
    janitorIntervalMs: 5_000,
    leaseMs: 5_000,
    crashAt,
    clock: new ManualClock(),
    log: silentLogger,
    gateway,
    onRole: (role) => {
      if (role.leader) leading();
    },
  });
  const kill = async () => {
    await handle.close();
    await client.close();
  };
  cleanups.push(kill);
  await led;
  await handle.settled();
  return { handle, client, kill };
}

const ADDRESSES = ['10.0.0.1:11210', '10.0.0.2:11210', '10.0.0.3:11210'];

function setup(count = 2) {
  const shared = new MemoryMetadata();
  const gateway = new FakeGateway();
  const nodes = ADDRESSES.slice(0, count).map((a) => gateway.add(a));
  return { shared, gateway, nodes };
}

function init(
  opId: string,
  nodes: readonly string[],
  replicas = 1,
  vbuckets = VBS,
): TopologyOperationRequest {
  return { opId, kind: 'init', nodes, vbuckets, replicas };
}

/** What init promises on the nodes: each holds its map position with the manager's epoch, and its topology. */
function expectNodesFollowTheMap(
  gateway: FakeGateway,
  addresses: readonly string[],
  replicas: number,
  epoch: number,
) {
  const map = planMap({ nodes: addresses.map((address) => ({ address })), vbuckets: VBS, replicas });
  const topologies = replicationTopology(map, [], addresses);
  for (const address of addresses) {
    const node = gateway.nodes.get(address)!;
    const expected = map.chains.map((chain) => {
      const at = chain.indexOf(address);
      return at < 0 ? 'dead' : at === 0 ? 'active' : 'replica';
    });
    expect(node.states, address).toEqual(expected);
    expect(node.epoch).toBe(epoch);
    expect(node.config?.epoch).toBe(epoch);
    expect(node.topology).toEqual(topologies.get(address));
  }
  return map;
}

describe('cluster init', () => {
  it('writes nodes, settings and the planned map, sets every node to the map and starts replication', async () => {
    const { shared, gateway, nodes } = setup(2);
    const m = await startManager(shared, gateway, 'm1');
    const addresses = nodes.map((n) => n.address);
    const result = await m.handle.core.submit(init('init-1', addresses));
    expect(result).toMatchObject({ opId: 'init-1', outcome: 'done', detail: { nodes: 2, vbuckets: VBS } });
    const status = await m.handle.core.status();
    const epoch = status.epoch;
    const map = expectNodesFollowTheMap(gateway, addresses, 1, epoch);
    expect(status.map).toEqual(map.chains);
    expect(status.nodes.map((n) => [n.address, n.state])).toEqual(addresses.map((a) => [a, 'active']));
    expect(status.settings).toEqual({ ...DEFAULT_SETTINGS, replicas: 1 });
    expect(status.unfinishedOperation).toBeNull();
    expect(await readResult(m.client, 'init-1')).toEqual(result);
    // actives before replicas on every node
    for (const node of nodes) {
      const states = node.log.filter((l) => l.startsWith('state'));
      const firstReplica = states.findIndex((l) => l.endsWith('replica'));
      expect(states.slice(firstReplica).some((l) => l.endsWith('active'))).toBe(false);
      expect(node.log.indexOf('config')).toBe(0);
    }
  });

  it('answers only once every replica stream is open', async () => {
    const { shared, gateway, nodes } = setup(2);
    for (const n of nodes) n.openAfterPolls = 3;
    const m = await startManager(shared, gateway, 'm1');
    await m.handle.core.submit(
      init(
        'init-1',
        nodes.map((n) => n.address),
      ),
    );
    for (const n of nodes) expect(n.polls).toBe(4);
  });

  it('answers done to the same arguments again and refuses others', async () => {
    const { shared, gateway, nodes } = setup(3);
    const m = await startManager(shared, gateway, 'm1');
    const two = nodes.slice(0, 2).map((n) => n.address);
    await m.handle.core.submit(init('init-1', two));
    expect(await m.handle.core.submit(init('init-2', [...two].reverse()))).toMatchObject({ outcome: 'done' });
    for (const other of [init('init-3', two, 2), init('init-4', two, 1, 16), init('init-5', ADDRESSES)]) {
      await expect(m.handle.core.submit(other)).rejects.toMatchObject({
        errorClass: 'permanent',
        message: expect.stringMatching(/already initialised/),
      });
    }
  });

  it('refuses nodes that hold a copy, have another vBucket count or do not answer, writing nothing', async () => {
    const { shared, gateway, nodes } = setup(2);
    const m = await startManager(shared, gateway, 'm1');
    const addresses = nodes.map((n) => n.address);
    nodes[1]!.states[3] = 'replica';
    await expect(m.handle.core.submit(init('a', addresses))).rejects.toMatchObject({
      errorClass: 'permanent',
      message: expect.stringMatching(/already holds vBuckets \(3 replica\)/),
    });
    nodes[1]!.states[3] = 'dead';
    await expect(m.handle.core.submit(init('b', addresses, 1, 16))).rejects.toMatchObject({
      errorClass: 'permanent',
      message: expect.stringMatching(/has 8 vBuckets, init asks 16/),
    });
    nodes[0]!.reachable = false;
    await expect(m.handle.core.submit(init('c', addresses))).rejects.toMatchObject({
      errorClass: 'permanent',
      message: expect.stringMatching(/unreachable/),
    });
    const snapshot = await readSnapshot(m.client);
    expect(snapshot.settings).toBeUndefined();
    expect(snapshot.marker).toBeUndefined();
    expect(snapshot.nodes.size).toBe(0);
    expect(nodes.every((n) => n.log.length === 0)).toBe(true);
  });

  it('refuses arguments out of range', async () => {
    const { shared, gateway, nodes } = setup(1);
    const m = await startManager(shared, gateway, 'm1');
    for (const bad of [
      init('x1', []),
      init('x2', [nodes[0]!.address], 4),
      init('x3', [nodes[0]!.address], 1, 0),
      init('x4', [nodes[0]!.address, nodes[0]!.address]),
    ]) {
      await expect(m.handle.core.submit(bad)).rejects.toBeInstanceOf(ClusterCallError);
    }
  });

  const initSteps = TOPOLOGY_STEPS.filter((s) => s.startsWith('init:'));
  it('has a crash point after each persisted step', () => {
    expect(initSteps).toEqual(['init:after-marker', 'init:after-states', 'init:after-clear']);
  });

  for (const step of initSteps) {
    it(`is rolled forward by the next leader after a crash at ${step}, and its op id then answers done`, async () => {
      const { shared, gateway, nodes } = setup(3);
      const addresses = nodes.map((n) => n.address);
      const first = await startManager(shared, gateway, 'm1', step);
      const outcome = await first.handle.core.submit(init('init-1', addresses, 2)).catch((e: unknown) => e);
      if (step !== 'init:after-clear') expect(outcome).toMatchObject({ errorClass: 'maybe-applied' });
      expect(await first.handle.crashed).toBe(step);
      await first.kill();

      const next = await startManager(shared, gateway, 'm2');
      const status = await next.handle.core.status();
      expect(status.unfinishedOperation).toBeNull();
      expectNodesFollowTheMap(gateway, addresses, 2, status.epoch);
      expect(await readResult(next.client, 'init-1')).toMatchObject({ outcome: 'done' });
      expect(await next.handle.core.submit(init('init-1', addresses, 2))).toMatchObject({ outcome: 'done' });
    });
  }

  it('rolls forward past a node that died after the marker, leaving it to the janitor', async () => {
    const { shared, gateway, nodes } = setup(2);
    const first = await startManager(shared, gateway, 'm1', 'init:after-marker');
    await first.handle.core
      .submit(
        init(
          'init-1',
          nodes.map((n) => n.address),
        ),
      )
      .catch(() => undefined);
    await first.kill();
    nodes[1]!.reachable = false;
    const next = await startManager(shared, gateway, 'm2');
    const status = await next.handle.core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(nodes[0]!.states.filter((s) => s !== 'dead').length).toBe(VBS);
    expect(await readResult(next.client, 'init-1')).toMatchObject({ outcome: 'done' });
  });
});

describe('cluster settings', () => {
  function settings(opId: string, change: TopologyOperationRequest['settings']): TopologyOperationRequest {
    return { opId, kind: 'settings', settings: change };
  }

  it('is refused before init', async () => {
    const { shared, gateway } = setup(1);
    const m = await startManager(shared, gateway, 'm1');
    await expect(m.handle.core.submit(settings('s1', { autoFailoverS: 30 }))).rejects.toMatchObject({
      errorClass: 'permanent',
      message: expect.stringMatching(/not initialised/),
    });
  });

  it('changes the settings given, keeps the others, validates ranges and resets the auto-failover count', async () => {
    const { shared, gateway, nodes } = setup(2);
    const m = await startManager(shared, gateway, 'm1');
    await m.handle.core.submit(
      init(
        'init-1',
        nodes.map((n) => n.address),
      ),
    );
    for (const bad of [
      { autoFailoverS: 4 },
      { autoFailoverS: 3601 },
      { autoFailoverMax: -1 },
      { movesPerNode: 0 },
      { movesPerNode: 65 },
      { autoFailoverS: 7.5 },
    ]) {
      await expect(m.handle.core.submit(settings(`bad-${JSON.stringify(bad)}`, bad))).rejects.toMatchObject({
        errorClass: 'permanent',
      });
    }
    const result = await m.handle.core.submit(settings('s1', { autoFailoverS: 5, movesPerNode: 2 }));
    expect(result).toMatchObject({ outcome: 'done', detail: { autoFailoverS: 5, movesPerNode: 2 } });
    let status = await m.handle.core.status();
    expect(status.settings).toEqual({ replicas: 1, autoFailoverS: 5, autoFailoverMax: 1, movesPerNode: 2 });
    // a resend of the op id answers the first result, even with the settings changed since
    await m.handle.core.submit(settings('s2', { autoFailoverMax: 3 }));
    expect(await m.handle.core.submit(settings('s1', { autoFailoverS: 5, movesPerNode: 2 }))).toEqual(result);

    // two automatic failovers counted; a reset zeroes the count
    await shared.client().txn([], [{ type: 'put', key: keys.autoFailover, value: encode({ count: 2 }) }]);
    expect((await m.handle.core.status()).autoFailoverCount).toBe(2);
    await m.handle.core.submit(settings('s3', { resetAutoFailoverCount: true }));
    status = await m.handle.core.status();
    expect(status.autoFailoverCount).toBe(0);
    expect(status.settings).toEqual({ replicas: 1, autoFailoverS: 5, autoFailoverMax: 3, movesPerNode: 2 });
    const stored = await m.client.get(keys.autoFailover);
    expect(decode(stored!.value)).toEqual({ count: 0 });
  });
});
