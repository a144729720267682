import { afterEach, describe, expect, it } from 'vitest';
import { startManagerCore } from '../../src/cluster/core.js';
import { readResult } from '../../src/cluster/layout.js';
import type { OperationResult } from '../../src/cluster/types.js';
import { userAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import { Status, silentLogger, VBucketState } from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { seedCluster } from './fake-nodes.js';

const AUTH = { user: 'admin', password: 'rebalance-pw' };
const VBS = 8;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startNode(layout: { active?: number[]; replica?: number[] }) {
  const node = await StorageNode.start({
    host: '127.0.0.1',
    port: 0,
    vbuckets: VBS,
    ...layout,
    auth: userAuth(new Map([[AUTH.user, AUTH.password]])),
    peerCredentials: AUTH,
  });
  cleanups.push(() => node.stop());
  const address = `127.0.0.1:${node.address.port}`;
  const client = await NodeClient.connect({ host: '127.0.0.1', port: node.address.port }, AUTH);
  cleanups.push(() => client.close());
  return { node, address, client };
}

async function until<T>(check: () => Promise<T | undefined>, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('rebalance on real nodes with their replication agents', () => {
  it('moves vBuckets onto a third node under a writer: no acknowledged write lost, never two actives', async () => {
    const a = await startNode({ active: range(VBS) });
    const b = await startNode({ replica: range(VBS) });
    const c = await startNode({});
    const nodes = [a, b, c];
    const byAddress = new Map(nodes.map((n) => [n.address, n]));
    const shared = new MemoryMetadata();
    const store = shared.client();
    await seedCluster(
      store,
      { [a.address]: 'active', [b.address]: 'active', [c.address]: 'added' },
      { vbuckets: VBS, chains: range(VBS).map(() => [a.address, b.address]) },
    );
    const handle = await startManagerCore({
      name: 'm1',
      httpUrl: 'http://127.0.0.1:0/m1',
      store: shared.client(),
      nodeAuth: AUTH,
      janitorIntervalMs: 5_000,
      leaseMs: 5_000,
      clock: new ManualClock(),
      log: silentLogger,
      rebalance: { pollMs: 20 },
    });
    cleanups.push(() => handle.close());
    await until(async () => (handle.core.role().leader ? true : undefined), 'leadership');
    await handle.settled();
    const core = handle.core;

    // a writer that follows the map: unique keys, each acknowledged one remembered
    let map = (await core.status()).map;
    const acked = new Map<string, { vb: number; value: string }>();
    let writing = true;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        const key = `k${i}`;
        const vb = i % VBS;
        const value = `v${i}`;
        while (writing) {
          const owner = byAddress.get(map[vb]?.[0] ?? '');
          const status = owner
            ? await owner.client.set(vb, key, value, 2_000).then(
                (r) => r.status,
                () => -1,
              )
            : -1;
          if (status === Status.Success) {
            acked.set(key, { vb, value });
            break;
          }
          await new Promise((r) => setTimeout(r, 5));
          map = (await core.status()).map;
        }
      }
    })();
    // a watcher of every node's states
    const doubles = new Set<number>();
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const states = await Promise.all(nodes.map((n) => n.client.vbucketStates().catch(() => [])));
        for (const vb of range(VBS)) {
          const actives = states.filter(
            (rows) => rows.find((r) => r.vb === vb)?.state === VBucketState.Active,
          );
          if (actives.length > 1) doubles.add(vb);
        }
        await new Promise((r) => setTimeout(r, 5));
      }
    })();

    await until(async () => (acked.size >= 200 ? true : undefined), 'writes before the rebalance');
    const atStart = acked.size;
    expect(await core.submit({ opId: 'rb', kind: 'rebalance' })).toMatchObject({ outcome: 'started' });
    const result = await until<OperationResult>(async () => readResult(store, 'rb'), 'the rebalance to end');
    expect(result.outcome).toBe('done');
    expect(result.detail?.moves).toBe(result.detail?.total);
    const before = acked.size;
    // the writer kept being acknowledged while vBuckets moved
    expect(before).toBeGreaterThan(atStart);
    await until(async () => (acked.size >= before + 100 ? true : undefined), 'writes after the rebalance');
    writing = false;
    await writer;
    watching = false;
    await watcher;
    await handle.settled();

    const status = await core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(status.nodes.find((n) => n.address === c.address)?.state).toBe('active');
    expect(status.map.some((chain) => chain.includes(c.address))).toBe(true);
    expect(doubles).toEqual(new Set());
    // exactly one active per vBucket, the map's head
    const finalStates = await Promise.all(nodes.map((n) => n.client.vbucketStates()));
    for (const vb of range(VBS)) {
      const actives = nodes.filter(
        (_, i) => finalStates[i]?.find((r) => r.vb === vb)?.state === VBucketState.Active,
      );
      expect(actives.map((n) => n.address)).toEqual([status.map[vb]?.[0]]);
    }
    // every acknowledged write reads back from the vBucket's owner
    const lost: string[] = [];
    for (const [key, { vb, value }] of acked) {
      const owner = byAddress.get(status.map[vb]?.[0] ?? '');
      const read = await owner?.client.get(vb, key);
      if (read?.status !== Status.Success || read.value?.toString() !== value) lost.push(key);
    }
    expect({ acked: acked.size, lost }).toEqual({ acked: acked.size, lost: [] });
    // the replicas follow their new heads
    await until(async () => {
      const seqnos = await Promise.all(nodes.map((n) => n.client.vbucketStates()));
      const seqnoOf = (address: string | null, vb: number) =>
        seqnos[nodes.findIndex((n) => n.address === address)]?.find((r) => r.vb === vb)?.highSeqno;
      return status.map.every((chain, vb) =>
        chain.every((n) => seqnoOf(n, vb) === seqnoOf(chain[0] ?? null, vb)),
      )
        ? true
        : undefined;
    }, 'the replicas to catch up');
  });
});
