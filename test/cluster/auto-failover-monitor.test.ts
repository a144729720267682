import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { LeaderContext } from '../../src/cluster/context.js';
import { startAutoFailoverMonitor } from '../../src/cluster/failover/monitor.js';
import { type ClusterSettings, encode, keys } from '../../src/cluster/index.js';
import { ManagerMetrics } from '../../src/cluster/metrics.js';
import { silentLogger } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import {
  addr,
  FakeCluster,
  type FakeManager,
  type FakeNode,
  roundRobin,
  seedCluster,
  startFakeManager,
} from './failover-fakes.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function cluster(
  n: number,
  copies: number,
  settings: Partial<ClusterSettings>,
  groups: (string | undefined)[] = [],
) {
  const shared = new MemoryMetadata();
  const fakes = new FakeCluster(12);
  const addresses = Array.from({ length: n }, (_, i) => addr(i + 1));
  const nodes = addresses.map((a) => fakes.add(a));
  const chains = roundRobin(12, addresses, copies);
  fakes.applyMap(chains);
  await seedCluster(
    shared,
    chains,
    addresses.map((address, i) => ({ address, group: groups[i] })),
    { replicas: copies - 1, ...settings },
  );
  const manager = await startFakeManager(shared, fakes, 'm1');
  cleanups.push(() => manager.close());
  return { shared, fakes, nodes, manager };
}

/** Moves the manager's clock by whole probe ticks, letting each frame (and what it submits) finish. */
async function seconds(manager: FakeManager, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    manager.clock.advance(1_000);
    for (let turn = 0; turn < 4; turn++) {
      await new Promise((resolve) => setImmediate(resolve));
      await manager.handle.settled();
    }
  }
}

async function counted(manager: FakeManager, outcome: string, reason: string): Promise<number> {
  const metric = await manager.registry.getSingleMetric('dcpx_manager_auto_failover_total')?.get();
  return metric?.values.find((v) => v.labels.outcome === outcome && v.labels.reason === reason)?.value ?? 0;
}

async function stateOf(manager: FakeManager, node: FakeNode): Promise<string | undefined> {
  return (await manager.handle.core.status()).nodes.find((n) => n.address === node.address)?.state;
}

describe('the auto-failover monitor on the leader', () => {
  it('fails a node over hard once it has not answered for autoFailoverS, counting it in metadata and metrics', async () => {
    const { nodes, manager, fakes } = await cluster(3, 2, { autoFailoverS: 5, autoFailoverMax: 1 });
    const [n1] = nodes as [FakeNode, FakeNode, FakeNode];
    await seconds(manager, 3);
    n1.up = false;
    await seconds(manager, 4);
    expect(await stateOf(manager, n1)).toBe('active');
    await seconds(manager, 2);
    expect(await stateOf(manager, n1)).toBe('failed');
    const status = await manager.handle.core.status();
    expect(status.autoFailoverCount).toBe(1);
    expect(await counted(manager, 'failover', 'node-down')).toBe(1);
    const members = status.nodes.filter((n) => n.state !== 'failed').map((n) => n.address);
    expect(fakes.problems(status.map, members)).toEqual([]);
  });

  it('refuses a second failover once the count is used up, and runs it after a person resets the count', async () => {
    const { nodes, manager, shared } = await cluster(4, 3, { autoFailoverS: 5, autoFailoverMax: 1 });
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode, FakeNode];
    n1.up = false;
    await seconds(manager, 7);
    expect(await stateOf(manager, n1)).toBe('failed');
    n2.up = false;
    await seconds(manager, 15);
    expect(await stateOf(manager, n2)).toBe('active');
    // logged and counted once for this down set, not once per frame
    expect(await counted(manager, 'refused', 'max-count')).toBe(1);
    shared.txn([], [{ type: 'put', key: keys.autoFailover, value: encode({ count: 0 }) }]);
    await seconds(manager, 2);
    expect(await stateOf(manager, n2)).toBe('failed');
  });

  it('fails over nobody when two nodes of no common group are down at once', async () => {
    const { nodes, manager } = await cluster(4, 3, { autoFailoverS: 5, autoFailoverMax: 2 });
    const [n1, n2] = nodes as [FakeNode, FakeNode, FakeNode, FakeNode];
    n1.up = false;
    n2.up = false;
    await seconds(manager, 12);
    expect(await stateOf(manager, n1)).toBe('active');
    expect(await stateOf(manager, n2)).toBe('active');
    expect(await counted(manager, 'refused', 'several-nodes-down')).toBe(1);
  });

  it('fails over a whole server group that went down together', async () => {
    const { nodes, manager } = await cluster(4, 2, { autoFailoverS: 5, autoFailoverMax: 2 }, [
      'g1',
      'g2',
      'g1',
      'g2',
    ]);
    const [n1, , n3] = nodes as [FakeNode, FakeNode, FakeNode, FakeNode];
    n1.up = false;
    n3.up = false;
    await seconds(manager, 8);
    expect(await stateOf(manager, n1)).toBe('failed');
    expect(await stateOf(manager, n3)).toBe('failed');
    expect(await counted(manager, 'failover', 'group-down')).toBe(2);
  });

  it('refuses when a vBucket would lose its last copy', async () => {
    const { nodes, manager } = await cluster(2, 1, { autoFailoverS: 5, autoFailoverMax: 1 });
    const [n1] = nodes as [FakeNode, FakeNode];
    n1.up = false;
    await seconds(manager, 8);
    expect(await stateOf(manager, n1)).toBe('active');
    expect(await counted(manager, 'refused', 'last-copy')).toBe(1);
  });
});

describe('the auto-failover monitor and a running rebalance', () => {
  it('stops the running rebalance before it submits the failover', async () => {
    const shared = new MemoryMetadata();
    const fakes = new FakeCluster(4);
    const addresses = [1, 2, 3].map(addr);
    for (const a of addresses) fakes.add(a);
    const chains = roundRobin(4, addresses, 2);
    fakes.applyMap(chains);
    await seedCluster(
      shared,
      chains,
      addresses.map((address) => ({ address })),
      {
        autoFailoverS: 5,
        autoFailoverMax: 1,
      },
    );
    // a rebalance's stored target: one runs
    shared.txn(
      [],
      [
        {
          type: 'put',
          key: keys.targetMap,
          value: encode({ opId: 'rb', map: { vbuckets: 4, chains }, total: 1 }),
        },
      ],
    );
    fakes.get(addr(1)).up = false;
    const calls: string[] = [];
    const clock = new ManualClock();
    const ctx = {
      term: { active: true, epoch: 7 },
      store: shared.client(),
      gateway: fakes,
      log: silentLogger,
      metrics: new ManagerMetrics(new Registry()),
    } as unknown as LeaderContext;
    const monitor = startAutoFailoverMonitor({
      ctx,
      clock,
      submit: async (request) => {
        calls.push(`submit ${request.kind} ${request.node} hard=${request.hard} auto=${request.auto}`);
        return { opId: request.opId, outcome: 'done' };
      },
      stopRebalance: async (_ctx, reason) => {
        calls.push(`stop rebalance: ${reason}`);
        return true;
      },
    });
    cleanups.push(() => monitor.stop());
    for (let i = 0; i < 8; i++) {
      clock.advance(1_000);
      await monitor.tick();
    }
    expect(calls.slice(0, 2)).toEqual([
      `stop rebalance: auto-failover of ${addr(1)}`,
      `submit failover ${addr(1)} hard=true auto=true`,
    ]);
    expect(monitor.health().get(addr(1))).toBe('failover');
  });
});
