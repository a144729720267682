import { afterEach, describe, expect, it } from 'vitest';
import {
  ClusterCallError,
  type ClusterSettings,
  decode,
  encode,
  keys,
  type NodeAddress,
  type NodeRecord,
  readResult,
  type TopologyOperationRequest,
} from '../../src/cluster/index.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import {
  addr,
  FakeCluster,
  type FakeNode,
  roundRobin,
  seedCluster,
  startFakeManager,
} from './failover-fakes.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
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
  const core = manager.handle.core;
  return { shared, fakes, nodes, addresses, chains, manager, core };
}

function failover(node: NodeAddress, opId: string, extra: Partial<TopologyOperationRequest> = {}) {
  return { opId, kind: 'failover' as const, node, hard: true, ...extra };
}

async function refusal(promise: Promise<unknown>): Promise<ClusterCallError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ClusterCallError);
  return error as ClusterCallError;
}

/** Txns that wrote the map since `from` (index into the store's committed list). */
function mapWrites(shared: MemoryMetadata, from: number) {
  return shared.committed
    .slice(from)
    .filter((t) => t.ops.some((o) => o.type === 'put' && o.key === keys.map));
}

function members(status: { nodes: readonly { address: string; state: string }[] }): string[] {
  return status.nodes.filter((n) => n.state !== 'failed').map((n) => n.address);
}

describe('hard failover', () => {
  it('promotes per vBucket the surviving replica with the highest seqno in one map txn, and the survivors follow it', async () => {
    const { shared, fakes, nodes, core, manager } = await cluster(3, 6, 3);
    const [n1, n2, n3] = nodes as [FakeNode, FakeNode, FakeNode];
    // vb 0 = [1,2,3]: node 3 is further ahead; vb 3 = [1,2,3]: a tie, so the earlier position wins
    n2.seqnos[0] = 5n;
    n3.seqnos[0] = 9n;
    n2.seqnos[3] = 7n;
    n3.seqnos[3] = 7n;
    n1.up = false;
    const before = shared.committed.length;

    const result = await core.submit(failover(n1.address, 'f1'));
    await manager.handle.settled();

    expect(result).toMatchObject({
      opId: 'f1',
      outcome: 'done',
      detail: { promoted: 2, lost: 0, auto: false },
    });
    expect(mapWrites(shared, before)).toHaveLength(1);
    const status = await core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(status.nodes.find((n) => n.address === n1.address)?.state).toBe('failed');
    expect(status.map[0]).toEqual([n3.address, n2.address]);
    expect(status.map[3]).toEqual([n2.address, n3.address]);
    expect(status.map.every((chain) => !chain.includes(n1.address))).toBe(true);
    // a promotion starts a new failover-log entry on the new head
    expect(n3.failoverEntries[0]).toBe(2);
    expect(n2.failoverEntries[3]).toBe(2);
    expect(fakes.problems(status.map, members(status))).toEqual([]);
    // every vBucket had a copy on the failed node (3 copies on 3 nodes): all are held for recovery
    const record = decode<NodeRecord>(shared.kvs.get(keys.node(n1.address))?.value ?? encode({}));
    expect(record).toEqual({ state: 'failed', held: [0, 1, 2, 3, 4, 5] });
  });

  it('stops replication before reading seqnos: chains the failed node headed have no source meanwhile', async () => {
    const { nodes, core } = await cluster(3, 3, 3);
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    const seen: string[] = [];
    const original = n2.session.bind(n2);
    n2.session = () => {
      const session = original();
      return {
        ...session,
        async vbucketInfo() {
          // vb 0 is headed by the failed node: the topology given before the read streams it from nobody
          seen.push(JSON.stringify(n2.topology));
          return session.vbucketInfo();
        },
      };
    };
    await core.submit(failover(n1.address, 'f1'));
    expect(seen.length).toBeGreaterThan(0);
    const first = JSON.parse(seen[0] as string) as Record<string, number[]>;
    expect(Object.values(first).flat()).not.toContain(0);
  });

  it('demotes the actives of a failed node that still answers before promoting (never two actives)', async () => {
    const { fakes, nodes, core } = await cluster(2, 4, 2);
    const [n1] = nodes as [FakeNode, FakeNode];
    await core.submit(failover(n1.address, 'f1'));
    expect(n1.states.filter((s) => s === 'active')).toEqual([]);
    const status = await core.status();
    expect(fakes.problems(status.map, members(status))).toEqual([]);
    expect(n1.topology).toEqual({});
  });

  it('fails over a node holding the only copy of some vBuckets, reporting them as lost', async () => {
    const { nodes, core } = await cluster(2, 8, 1);
    const [n1] = nodes as [FakeNode, FakeNode];
    n1.up = false;
    const result = await core.submit(failover(n1.address, 'f1'));
    expect(result).toMatchObject({ outcome: 'done', detail: { lost: 4, lostVbuckets: '0,2,4,6' } });
    const status = await core.status();
    expect(status.map.filter((chain) => chain[0] === null)).toHaveLength(4);
  });

  it('counts an automatic failover in the same txn as the map', async () => {
    const { shared, nodes, core } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    const before = shared.committed.length;
    await core.submit(failover(n1.address, 'auto-1', { auto: true }));
    const [txn] = mapWrites(shared, before);
    expect(txn?.ops.some((o) => o.type === 'put' && o.key === keys.autoFailover)).toBe(true);
    expect((await core.status()).autoFailoverCount).toBe(1);
  });

  it('answers done again for a node already failed over', async () => {
    const { nodes, core } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    expect(await core.submit(failover(n1.address, 'f2'))).toMatchObject({
      outcome: 'done',
      detail: { alreadyFailed: true },
    });
  });
});

describe('failover refusals (permanent, nothing written, each with its reason)', () => {
  it('refuses a node that is not a member', async () => {
    const { core, shared } = await cluster(2, 4, 2);
    const error = await refusal(core.submit(failover(addr(9), 'f1')));
    expect(error.errorClass).toBe('permanent');
    expect(error.context.reason).toBe('not-a-member');
    expect(await readResult(shared.client(), 'f1')).toBeUndefined();
  });

  it('refuses failing over the last node', async () => {
    const { core, nodes } = await cluster(1, 4, 1);
    const error = await refusal(core.submit(failover((nodes[0] as FakeNode).address, 'f1')));
    expect(error.context.reason).toBe('last-node');
    expect((await core.status()).unfinishedOperation).toBeNull();
  });

  it('refuses an automatic failover that would leave a vBucket without a copy', async () => {
    const { core, nodes } = await cluster(2, 4, 1);
    const [n1] = nodes as [FakeNode, FakeNode];
    n1.up = false;
    const error = await refusal(core.submit(failover(n1.address, 'a1', { auto: true })));
    expect(error.context.reason).toBe('last-copy');
    expect((await core.status()).nodes.every((n) => n.state === 'active')).toBe(true);
  });

  it('refuses an automatic failover once the count reached the maximum', async () => {
    const { core, nodes, shared } = await cluster(3, 6, 2, { autoFailoverMax: 1 });
    shared.txn([], [{ type: 'put', key: keys.autoFailover, value: encode({ count: 1 }) }]);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    const error = await refusal(core.submit(failover(n1.address, 'a1', { auto: true })));
    expect(error.context.reason).toBe('max-count');
  });

  it('refuses a graceful failover of a node that does not answer, pointing to hard', async () => {
    const { core, nodes } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    const error = await refusal(core.submit(failover(n1.address, 'g1', { hard: false })));
    expect(error.errorClass).toBe('permanent');
    expect(error.message).toMatch(/hard/);
    expect((await core.status()).unfinishedOperation).toBeNull();
  });

  it('refuses a graceful failover when a vBucket the node heads has no replica', async () => {
    const { core, nodes } = await cluster(2, 4, 1);
    const error = await refusal(core.submit(failover((nodes[0] as FakeNode).address, 'g1', { hard: false })));
    expect(error.message).toMatch(/no replica/);
  });

  it('refuses to recover a node that is not a member, or a failed node that does not answer', async () => {
    const { core, nodes } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    expect((await refusal(core.submit({ opId: 'r0', kind: 'recover', node: addr(9) }))).context.reason).toBe(
      'not-a-member',
    );
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    const error = await refusal(core.submit({ opId: 'r1', kind: 'recover', node: n1.address }));
    expect(error.context.reason).toBe('unreachable');
    // the same op id runs once the cause is gone
    n1.up = true;
    expect(await core.submit({ opId: 'r1', kind: 'recover', node: n1.address })).toMatchObject({
      outcome: 'done',
    });
  });
});

describe('graceful failover', () => {
  it('takes each active of the node over by its first replica, then drops the node without promoting', async () => {
    const { fakes, nodes, core, manager } = await cluster(3, 6, 2);
    const [n1, n2, n3] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.seqnos = n1.seqnos.map((_, vb) => BigInt(100 + vb));
    const result = await core.submit(failover(n1.address, 'g1', { hard: false }));
    await manager.handle.settled();
    expect(result).toMatchObject({ outcome: 'done', detail: { promoted: 0, lost: 0, hard: false } });
    // round robin over 3 nodes: node 1 heads vb 0 and 3, whose first replica is node 2
    expect(n2.takeovers.map((t) => [t.vb, t.source])).toEqual([
      [0, n1.address],
      [3, n1.address],
    ]);
    expect(n3.takeovers).toEqual([]);
    expect(n2.seqnos[0]).toBe(100n);
    const status = await core.status();
    expect(status.map[0]).toEqual([n2.address]);
    expect(status.nodes.find((n) => n.address === n1.address)?.state).toBe('failed');
    expect(fakes.problems(status.map, members(status))).toEqual([]);
  });

  it('reads the states after a takeover answered with an unknown outcome, and goes on when it happened', async () => {
    const { fakes, nodes, core } = await cluster(3, 6, 2);
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    n2.unsettledTakeovers.add(3);
    expect(await core.submit(failover(n1.address, 'g1', { hard: false }))).toMatchObject({ outcome: 'done' });
    const status = await core.status();
    expect(status.map[3]).toEqual([n2.address]);
    expect(fakes.problems(status.map, members(status))).toEqual([]);
  });

  it('stops at a failed takeover: the node stays a member and what was taken over stays moved', async () => {
    const { nodes, core } = await cluster(3, 6, 2);
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode];
    n2.failTakeovers.add(3);
    const error = await refusal(core.submit(failover(n1.address, 'g1', { hard: false })));
    expect(error.errorClass).toBe('permanent');
    expect(error.message).toMatch(/vb 3/);
    const status = await core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(status.nodes.find((n) => n.address === n1.address)?.state).toBe('active');
    expect(status.map[0]?.[0]).toBe(n2.address);
    expect(status.map[3]?.[0]).toBe(n1.address);
    expect(n1.states[3]).toBe('active');
  });
});

describe('recover', () => {
  it('puts a failed node back as replica of its held vBuckets that lack a copy and streams them from the heads', async () => {
    const { fakes, nodes, core, manager } = await cluster(3, 6, 2);
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    await manager.handle.settled();
    n1.up = true;
    const result = await core.submit({ opId: 'r1', kind: 'recover', node: n1.address });
    await manager.handle.settled();
    // node 1 held vb 0, 2, 3, 5 (heads of 0 and 3, replica of 2 and 5); each chain then had one copy
    expect(result).toMatchObject({ outcome: 'done', detail: { replicas: 4, activated: 0 } });
    const status = await core.status();
    expect(status.nodes.find((n) => n.address === n1.address)?.state).toBe('active');
    for (const vb of [0, 2, 3, 5]) expect(status.map[vb]?.slice(1)).toContain(n1.address);
    expect(fakes.problems(status.map, members(status))).toEqual([]);
  });

  it('makes a recovered node head again the vBuckets whose every copy was lost with it', async () => {
    const { fakes, nodes, core, manager } = await cluster(2, 4, 1);
    const [n1] = nodes as [FakeNode, FakeNode];
    n1.up = false;
    await core.submit(failover(n1.address, 'f1'));
    // (the janitor round after it runs while the node is still down)
    await manager.handle.settled();
    n1.up = true;
    const result = await core.submit({ opId: 'r1', kind: 'recover', node: n1.address });
    expect(result).toMatchObject({ detail: { activated: 2, replicas: 0 } });
    const status = await core.status();
    expect(status.map[0]).toEqual([n1.address]);
    expect(fakes.problems(status.map, members(status))).toEqual([]);
  });

  it('answers done at once for a node that is not failed', async () => {
    const { nodes, core } = await cluster(2, 4, 2);
    expect(
      await core.submit({ opId: 'r1', kind: 'recover', node: (nodes[0] as FakeNode).address }),
    ).toMatchObject({ outcome: 'done', detail: { alreadyMember: true } });
  });
});
