import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  type Chain,
  type ClusterSettings,
  type NodeAddress,
  readResult,
  type TopologyOperationRequest,
} from '../../src/cluster/index.js';
import { durabilityTopology } from '../../src/cluster/plan/durability-topology.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import {
  addr,
  FakeCluster,
  type FakeNode,
  roundRobin,
  seedCluster,
  startFakeManager,
} from './failover-fakes.js';
import {
  FakeCluster as RebalanceFakes,
  seedCluster as seedRebalance,
  startFakeManager as startRebalanceManager,
} from './fake-nodes.js';

// DESIGN.md Part 3 "Topology": every SET_VBUCKET making a node active, and every chain change, gives the
// vBucket's head its chain as kv_engine's "topology" (padded with null to R+1 slots).

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('the durability topology of a chain', () => {
  it('is the chain, head first, padded with null up to R+1 slots', () => {
    expect(durabilityTopology(['a', 'b'], 1)).toEqual([['a', 'b']]);
    expect(durabilityTopology(['a'], 1)).toEqual([['a', null]]);
    expect(durabilityTopology(['a', null, 'c'], 2)).toEqual([['a', null, 'c']]);
    expect(durabilityTopology(['a'], 2)).toEqual([['a', null, null]]);
  });

  it('leaves out the nodes named in `without`, and there is none for a chain without a head', () => {
    expect(durabilityTopology(['b', 'c', 'a'], 2, new Set(['a']))).toEqual([['b', 'c', null]]);
    expect(durabilityTopology([null], 1)).toBeUndefined();
  });
});

/** A cluster of `n` fake nodes with round-robin chains of `copies` copies and a manager leading it. */
async function cluster(n: number, vbuckets: number, copies: number, settings: Partial<ClusterSettings> = {}) {
  const shared = new MemoryMetadata();
  const fakes = new FakeCluster(vbuckets);
  const addresses = Array.from({ length: n }, (_, i) => addr(i + 1));
  const nodes = addresses.map((a) => fakes.add(a));
  const chains = roundRobin(vbuckets, addresses, copies);
  fakes.applyMap(chains);
  await seedCluster(
    shared,
    chains,
    addresses.map((address) => ({ address })),
    { replicas: copies - 1, ...settings },
  );
  const manager = await startFakeManager(shared, fakes, 'm1');
  cleanups.push(() => manager.close());
  return { shared, fakes, nodes, addresses, chains, manager, core: manager.handle.core };
}

/** Per vBucket, what its head was last told, compared with the chain it heads (R replicas). */
function topologyProblems(fakes: FakeCluster, chains: readonly Chain[], replicas: number): string[] {
  const problems: string[] = [];
  chains.forEach((chain, vb) => {
    const head = chain[0] ?? null;
    if (head === null) return;
    const told = fakes.get(head).topologies[vb];
    const wanted = durabilityTopology(chain, replicas);
    if (JSON.stringify(told) !== JSON.stringify(wanted)) {
      problems.push(
        `vb ${vb}: head ${head} told ${JSON.stringify(told)}, chain wants ${JSON.stringify(wanted)}`,
      );
    }
  });
  return problems;
}

const failover = (node: NodeAddress, opId: string, hard = true): TopologyOperationRequest => ({
  opId,
  kind: 'failover',
  node,
  hard,
});

describe('the manager gives each head its durability topology', () => {
  it('sends every head its chain on a new leader’s first janitor round, then nothing while nothing changes', async () => {
    const { fakes, nodes, chains, manager } = await cluster(3, 6, 2);
    expect(topologyProblems(fakes, chains, 1)).toEqual([]);
    const calls = () => nodes.flatMap((n) => n.calls.filter((c) => c.includes('active')));
    const before = calls().length;
    await manager.handle.runJanitor();
    expect(calls().length).toBe(before);
  });

  it('sends the topologies again to a node that restarted (new boot id) between two janitor rounds', async () => {
    const { fakes, nodes, chains, manager } = await cluster(3, 6, 2);
    const n1 = nodes[0] as FakeNode;
    n1.topologies.fill(undefined);
    await manager.handle.runJanitor();
    expect(topologyProblems(fakes, chains, 1)).not.toEqual([]);
    n1.boot = 'boot-2';
    await manager.handle.runJanitor();
    expect(topologyProblems(fakes, chains, 1)).toEqual([]);
  });

  it('hard failover: the promoted heads and the heads that lost their replica get the new chain (null slot)', async () => {
    const { fakes, nodes, core, manager } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    await manager.handle.settled();
    const status = await core.status();
    // with R=1 every chain is one copy now: the head alone cannot make a majority of [head, null]
    for (const [vb, chain] of status.map.entries()) {
      if (
        !roundRobin(
          6,
          nodes.map((n) => n.address),
          2,
        )[vb]?.includes(n1.address)
      )
        continue;
      expect(fakes.get(chain[0] as string).topologies[vb]).toEqual([[chain[0], null]]);
    }
    expect(topologyProblems(fakes, status.map, 1)).toEqual([]);
  });

  it('recover: the heads of the chains the node came back into get it as their replica', async () => {
    const { fakes, nodes, core, manager } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    await manager.handle.settled();
    n1.up = true;
    await core.submit({ opId: 'r1', kind: 'recover', node: n1.address });
    await manager.handle.settled();
    const status = await core.status();
    for (const vb of [0, 2, 3, 5]) {
      const chain = status.map[vb] as Chain;
      expect(chain[1]).toBe(n1.address);
      expect(fakes.get(chain[0] as string).topologies[vb]).toEqual([[chain[0], n1.address]]);
    }
    expect(topologyProblems(fakes, status.map, 1)).toEqual([]);
  });

  it('graceful failover: each new head is told its chain without the leaving node right after its takeover', async () => {
    const { fakes, nodes, core, manager } = await cluster(3, 6, 3);
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    expect(await core.submit(failover(n1.address, 'g1', false))).toMatchObject({ outcome: 'done' });
    await manager.handle.settled();
    const status = await core.status();
    // vb 0 = [1,2,3] was taken over by node 2: [2, 3, null] (R=2), never naming node 1
    expect(status.map[0]).toEqual([n2.address, addr(3)]);
    expect(n2.topologies[0]).toEqual([[n2.address, addr(3), null]]);
    const told = n2.calls.indexOf('setVBucketState 0 active');
    expect(told).toBeGreaterThan(n2.calls.indexOf(`takeover 0 from ${n1.address}`));
    expect(topologyProblems(fakes, status.map, 2)).toEqual([]);
  });
});

describe('hard failover promotes the replica with the highest high prepared seqno', () => {
  it('prefers the highest prepared seqno over the highest seqno, and breaks its ties by seqno', async () => {
    const { nodes, core, manager } = await cluster(3, 6, 3);
    const [n1, n2, n3] = nodes as [FakeNode, FakeNode, FakeNode];
    // vb 0 = [1,2,3]: node 2 has more items, node 3 more prepares (an acked sync write may be only there)
    n2.seqnos[0] = 20n;
    n2.preparedSeqnos[0] = 8n;
    n3.seqnos[0] = 12n;
    n3.preparedSeqnos[0] = 11n;
    // vb 3 = [1,2,3]: the same prepares, node 3 further by seqno
    n2.seqnos[3] = 9n;
    n2.preparedSeqnos[3] = 6n;
    n3.seqnos[3] = 10n;
    n3.preparedSeqnos[3] = 6n;
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    await manager.handle.settled();
    const status = await core.status();
    expect(status.map[0]).toEqual([n3.address, n2.address]);
    expect(status.map[3]).toEqual([n3.address, n2.address]);
    expect(n3.topologies[0]).toEqual([[n3.address, n2.address, null]]);
  });
});

describe('init and rebalance give each head its topology', () => {
  const A = '10.0.0.1:11210';
  const B = '10.0.0.2:11210';
  const C = '10.0.0.3:11210';

  async function seeded(chains: Chain[], states: Record<string, 'active' | 'added'>) {
    const shared = new MemoryMetadata();
    const fakes = new RebalanceFakes([A, B, C], chains.length);
    const map = { vbuckets: chains.length, chains };
    fakes.place(map);
    const seeder = shared.client();
    await seedRebalance(seeder, states, map, { replicas: 1 });
    const client = shared.client();
    const manager = await startRebalanceManager('m1', client, fakes);
    cleanups.push(async () => {
      await manager.handle.close();
      await client.close();
      await seeder.close();
    });
    await manager.leading;
    await manager.handle.settled();
    return { shared, fakes, manager, client };
  }

  it('init sets each active with its chain as topology', async () => {
    const shared = new MemoryMetadata();
    const fakes = new RebalanceFakes([A, B], 4);
    const client = shared.client();
    const manager = await startRebalanceManager('m1', client, fakes);
    cleanups.push(async () => {
      await manager.handle.close();
      await client.close();
    });
    await manager.leading;
    const result = await manager.handle.core.submit({
      opId: 'i1',
      kind: 'init',
      nodes: [A, B],
      vbuckets: 4,
      replicas: 1,
    });
    expect(result).toMatchObject({ outcome: 'done' });
    const status = await manager.handle.core.status();
    for (const [vb, chain] of status.map.entries()) {
      const set = fakes.events.find(
        (e) => e.op === 'state' && e.vb === vb && e.node === chain[0] && e.state === 'active',
      );
      expect(set).toMatchObject({ topology: [chain] });
    }
  });

  it('a rebalance move tells the new head its chain right after the takeover, before replicas are re-pointed', async () => {
    const chains: Chain[] = [
      [A, B],
      [B, A],
      [A, B],
      [B, A],
    ];
    const { fakes, manager, client } = await seeded(chains, { [A]: 'active', [B]: 'active', [C]: 'added' });
    const before = fakes.events.length;
    expect(await manager.handle.core.submit({ opId: 'rb', kind: 'rebalance' })).toMatchObject({
      outcome: 'started',
    });
    await vi.waitFor(
      async () => {
        if (!(await readResult(client, 'rb'))) throw new Error('not done');
      },
      { timeout: 10_000, interval: 5 },
    );
    await manager.handle.settled();
    const status = await manager.handle.core.status();
    const events = fakes.events.slice(before);
    let headMoves = 0;
    status.map.forEach((chain, vb) => {
      const head = chain[0] as string;
      const last = [...events].reverse().find((e) => e.op === 'state' && e.node === head && e.vb === vb);
      expect(last, `vb ${vb}`).toMatchObject({ state: 'active', topology: [[...chain]] });
      if (head === chains[vb]?.[0]) return;
      headMoves++;
      const takeover = events.findIndex((e) => e.op === 'takeover' && e.vb === vb && e.node === head);
      const told = events.findIndex(
        (e, i) =>
          i > takeover && e.op === 'state' && e.vb === vb && e.node === head && e.topology !== undefined,
      );
      const repointed = events.findIndex(
        (e, i) =>
          i > takeover && e.op === 'replication' && e.node !== head && (e.topology[head] ?? []).includes(vb),
      );
      expect(takeover).toBeGreaterThan(-1);
      expect(told).toBeGreaterThan(takeover);
      expect(told).toBeLessThan(repointed);
    });
    expect(headMoves).toBeGreaterThan(0);
  });
});
