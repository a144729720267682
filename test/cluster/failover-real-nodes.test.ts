import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Chain,
  type ManagerCoreHandle,
  type NodeAddress,
  startManagerCore,
} from '../../src/cluster/index.js';
import { replicationTopology } from '../../src/cluster/plan/replication-topology.js';
import { userAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import { silentLogger, vbucketStateName } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { roundRobin, seedCluster } from './failover-fakes.js';

const AUTH = { user: 'admin', password: 'failover-pw' };
const VBS = 8;
const ITEMS_PER_VB = 250;

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function until(check: () => Promise<boolean>, what: string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A durable in-process `dcpx node` with the cluster's credentials (its agent logs in with them too). */
async function startNode(dir: string, port = 0): Promise<StorageNode> {
  return StorageNode.start({
    host: '127.0.0.1',
    port,
    vbuckets: VBS,
    dataDir: dir,
    auth: userAuth(new Map([[AUTH.user, AUTH.password]])),
    peerCredentials: AUTH,
  });
}

const addressOf = (node: StorageNode): NodeAddress => `127.0.0.1:${node.address.port}`;

async function client(address: NodeAddress): Promise<NodeClient> {
  const [host, port] = address.split(':') as [string, string];
  const c = await NodeClient.connect({ host, port: Number(port) }, AUTH);
  cleanups.push(() => c.close());
  return c;
}

async function info(address: NodeAddress): Promise<{ state: string; highSeqno: bigint }[]> {
  const c = await NodeClient.connect({ host: '127.0.0.1', port: Number(address.split(':')[1]) }, AUTH);
  try {
    return (await c.vbucketStates()).map((r) => ({
      state: vbucketStateName(r.state),
      highSeqno: r.highSeqno,
    }));
  } finally {
    await c.close();
  }
}

/** Every replica of every chain at its head's high seqno. */
async function replicated(chains: readonly Chain[]): Promise<boolean> {
  const nodes = [...new Set(chains.flat().filter((n): n is NodeAddress => n !== null))];
  const infos = new Map(await Promise.all(nodes.map(async (n) => [n, await info(n)] as const)));
  return chains.every((chain, vb) => {
    const head = chain[0];
    if (!head) return true;
    const seqno = infos.get(head)?.[vb]?.highSeqno;
    return chain.slice(1).every((r) => r === null || infos.get(r)?.[vb]?.highSeqno === seqno);
  });
}

async function manager(shared: MemoryMetadata): Promise<ManagerCoreHandle> {
  const handle = await startManagerCore({
    name: 'm1',
    httpUrl: 'http://127.0.0.1:0/m1',
    store: shared.client(),
    nodeAuth: AUTH,
    // the janitor and the auto-failover monitor run only when the test says so
    clock: new ManualClock(),
    janitorIntervalMs: 60_000,
    leaseMs: 5_000,
    log: silentLogger,
  });
  cleanups.push(() => handle.close());
  while (!handle.core.role().leader) await new Promise((r) => setTimeout(r, 10));
  await handle.settled();
  return handle;
}

/**
 * Three durable nodes in an initialised cluster (map, settings and members as `cluster init` stores them;
 * states set by the janitor; replication pushed as the map says), with ITEMS_PER_VB writes per vBucket
 * acknowledged by the heads and replicated.
 */
async function replicatedCluster() {
  const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'dcpx-failover-')));
  cleanups.push(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });
  const nodes = await Promise.all(dirs.map((d) => startNode(d)));
  cleanups.push(() => Promise.all(nodes.map((n) => n.stop().catch(() => undefined))));
  const addresses = nodes.map(addressOf);
  const [a] = addresses as [NodeAddress, NodeAddress, NodeAddress];

  // an initialised cluster: map, settings, members (what `cluster init` stores), nodes set by the janitor
  const shared = new MemoryMetadata();
  const chains = roundRobin(VBS, addresses, 2);
  await seedCluster(
    shared,
    chains,
    addresses.map((address) => ({ address })),
    { replicas: 1 },
  );
  const handle = await manager(shared);
  const epoch = handle.core.role().epoch;
  await handle.runJanitor();
  // replication as the map says (the rebalance/init path pushes it; here the test does)
  for (const [node, topology] of replicationTopology({ vbuckets: VBS, chains }, [], addresses)) {
    await (await client(node)).setReplication(epoch, topology);
  }

  // writes acknowledged by the heads, then replicated
  const heads = new Map<NodeAddress, NodeClient>();
  for (const address of addresses) heads.set(address, await client(address));
  for (let vb = 0; vb < VBS; vb++) {
    const head = heads.get(chains[vb]?.[0] as NodeAddress) as NodeClient;
    for (let i = 0; i < ITEMS_PER_VB; i++) await head.set(vb, `k${vb}-${i}`, `v${i}`);
  }
  await until(() => replicated(chains), 'the replicas to catch up');

  return { dirs, nodes, addresses, a, shared, handle, heads, chains };
}

describe('failover and recovery on real storage nodes with their replication agents', () => {
  it('promotes the replicas of a stopped node with every replicated write readable, and recovers it by streaming only what it missed', async () => {
    const { dirs, nodes, a, handle, heads, chains } = await replicatedCluster();
    // node a stops; a hard failover promotes its replicas
    await nodes[0]?.stop();
    const result = await handle.core.submit({ opId: 'f1', kind: 'failover', node: a, hard: true });
    const ledByA = chains.filter((c) => c[0] === a).length;
    expect(result).toMatchObject({ outcome: 'done', detail: { promoted: ledByA, lost: 0 } });
    await handle.settled();
    let status = await handle.core.status();
    expect(status.nodes.find((n) => n.address === a)?.state).toBe('failed');
    for (let vb = 0; vb < VBS; vb++) {
      const head = status.map[vb]?.[0] as NodeAddress;
      expect(head).not.toBe(a);
      expect((await info(head))[vb]?.state).toBe('active');
      const reader = heads.get(head) as NodeClient;
      for (let i = 0; i < ITEMS_PER_VB; i++) {
        expect((await reader.get(vb, `k${vb}-${i}`)).value?.toString()).toBe(`v${i}`);
      }
    }

    // more writes on the new heads while a is away
    const later = 10;
    for (let vb = 0; vb < VBS; vb++) {
      const head = heads.get(status.map[vb]?.[0] as NodeAddress) as NodeClient;
      for (let i = 0; i < later; i++) await head.set(vb, `late${vb}-${i}`, `w${i}`);
    }

    // a comes back with its data; recover streams it only what it missed
    const restarted = await startNode(dirs[0] as string, Number(a.split(':')[1]));
    nodes[0] = restarted;
    const recovered = await handle.core.submit({ opId: 'r1', kind: 'recover', node: a });
    expect(recovered).toMatchObject({ outcome: 'done' });
    await handle.settled();
    status = await handle.core.status();
    const replicaOfA = status.map.flatMap((chain, vb) => (chain.slice(1).includes(a) ? [vb] : []));
    expect(replicaOfA.length).toBeGreaterThan(0);
    await until(() => replicated(status.map), 'the recovered node to catch up');
    const received = (await restarted.agent.status()).itemsReceived;
    const itemsThere = replicaOfA.length * (ITEMS_PER_VB + later);
    expect(received).toBeLessThan(0.1 * itemsThere);
    // its copies equal the heads' (the node's digest of each vBucket)
    const aClient = await client(a);
    for (const vb of replicaOfA) {
      const head = heads.get(status.map[vb]?.[0] as NodeAddress) as NodeClient;
      const digest = async (c: NodeClient) => [...(await c.stats(`vbucket-digest ${vb}`))];
      expect(await digest(aClient)).toEqual(await digest(head));
    }
  });

  it('fails a live node over gracefully: its agents take every active over with every write, leaving one active per vBucket', async () => {
    const { addresses, a, handle, heads, chains } = await replicatedCluster();
    const result = await handle.core.submit({ opId: 'g1', kind: 'failover', node: a });
    expect(result).toMatchObject({ outcome: 'done', detail: { promoted: 0, lost: 0, hard: false } });
    await handle.settled();
    const status = await handle.core.status();
    expect(status.nodes.find((n) => n.address === a)?.state).toBe('failed');
    const infos = new Map(await Promise.all(addresses.map(async (n) => [n, await info(n)] as const)));
    for (let vb = 0; vb < VBS; vb++) {
      const head = status.map[vb]?.[0] as NodeAddress;
      // the new head is the chain's first replica, not any survivor
      if (chains[vb]?.[0] === a) expect(head).toBe(chains[vb]?.[1]);
      expect(addresses.filter((n) => infos.get(n)?.[vb]?.state === 'active')).toEqual([head]);
      const reader = heads.get(head) as NodeClient;
      for (let i = 0; i < ITEMS_PER_VB; i += 25) {
        expect((await reader.get(vb, `k${vb}-${i}`)).value?.toString()).toBe(`v${i}`);
      }
    }
  });

  it('fails a stopped node over automatically once it has been unreachable for autoFailoverS, not before', async () => {
    const dirs = [0, 1, 2].map(() => mkdtempSync(join(tmpdir(), 'dcpx-auto-failover-')));
    cleanups.push(() => {
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    });
    const nodes = await Promise.all(dirs.map((d) => startNode(d)));
    cleanups.push(() => Promise.all(nodes.map((n) => n.stop().catch(() => undefined))));
    const addresses = nodes.map(addressOf);
    const shared = new MemoryMetadata();
    await seedCluster(
      shared,
      roundRobin(VBS, addresses, 2),
      addresses.map((address) => ({ address })),
      { replicas: 1, autoFailoverS: 5, autoFailoverMax: 1 },
    );
    const registry = new Registry();
    // the system clock: the monitor probes every second for real
    const handle = await startManagerCore({
      name: 'm1',
      httpUrl: 'http://127.0.0.1:0/m1',
      store: shared.client(),
      nodeAuth: AUTH,
      janitorIntervalMs: 60_000,
      leaseMs: 5_000,
      log: silentLogger,
      registry,
    });
    cleanups.push(() => handle.close());
    while (!handle.core.role().leader) await new Promise((r) => setTimeout(r, 10));
    await handle.runJanitor();

    const b = addresses[1] as NodeAddress;
    await nodes[1]?.stop();
    const stoppedAt = performance.now();
    const failedAt = async () => {
      const status = await handle.core.status();
      return status.nodes.find((n) => n.address === b)?.state === 'failed';
    };
    await until(failedAt, 'the automatic failover', 30_000);
    const after = performance.now() - stoppedAt;
    // never before the timeout; the frames make it at most a tick or two later, plus the failover itself
    expect(after).toBeGreaterThanOrEqual(5_000);
    expect(after).toBeLessThan(15_000);
    const status = await handle.core.status();
    expect(status.autoFailoverCount).toBe(1);
    expect(status.map.every((chain) => chain[0] !== null && !chain.includes(b))).toBe(true);
    // counted once the submitted operation answered the monitor
    const counted = async () =>
      (await registry.getSingleMetric('dcpx_manager_auto_failover_total')?.get())?.values.find(
        (v) => v.labels.outcome === 'failover' && v.labels.reason === 'node-down',
      )?.value === 1;
    await until(counted, 'the failover counted');
  });
});
