import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator } from '../../src/proxy/replicator.js';
import { ManualClock } from '../helpers/manual-clock.js';

// Two in-process nodes: A active for vb 0 with topology [[A, B]], B its replica, a Replicator in sync
// mode between them. B's consumer acknowledges prepares (SEQNO_ACKNOWLEDGED, forwarded by the proxy);
// A's producer hands them to its durability monitor, which commits.

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function start(options: { active?: number[]; replica?: number[]; clock?: ManualClock }) {
  const node = await StorageNode.start({
    host: '127.0.0.1',
    port: 0,
    vbuckets: 2,
    auth: noAuth,
    durabilityClock: options.clock,
    durabilityTimeoutMs: 1_000,
    ...options,
  });
  cleanups.push(() => node.stop());
  return node;
}

async function connect(node: StorageNode): Promise<NodeClient> {
  const client = await NodeClient.connect({ host: '127.0.0.1', port: node.address.port });
  cleanups.push(() => client.close());
  return client;
}

const name = (node: StorageNode) => `127.0.0.1:${node.address.port}`;

async function pair() {
  const clock = new ManualClock();
  const a = await start({ active: [0], clock });
  const b = await start({ replica: [0] });
  const client = await connect(a);
  const opaque = client.conn.allocateOpaque();
  const value = Buffer.from(JSON.stringify({ topology: [[name(a), name(b)]] }));
  const set = await client.raw(
    p.encodeSetVBucket({ opaque, vbucket: 0, state: p.VBucketState.Active, value }),
    opaque,
    p.Opcode.SET_VBUCKET,
  );
  expect(set.status).toBe(p.Status.Success);
  const replicator = new Replicator({
    producer: { host: '127.0.0.1', port: a.address.port },
    consumer: { host: '127.0.0.1', port: b.address.port },
    syncReplication: { consumerName: name(b) },
  });
  cleanups.push(() => replicator.close());
  expect((await replicator.setStreams([0])).every((s) => s.ok)).toBe(true);
  return { a, b, client, clock, replicator };
}

describe('durable writes replicated between two nodes', () => {
  it("commits a majority write once the replica's SEQNO_ACKNOWLEDGED reaches the active, with the prepare already on the replica", async () => {
    const { a, b, client } = await pair();
    for (let i = 0; i < 20; i++) {
      const reply = await client.set(0, `k${i}`, `v${i}`, 10_000, { durability: { level: 1 } });
      expect(reply.status).toBe(p.Status.Success);
      // acknowledged: the replica holds the prepare (at least) by now
      expect(b.store.vbucket(0).highPreparedSeqno).toBeGreaterThanOrEqual(
        a.store.vbucket(0).highPreparedSeqno,
      );
    }
    const removed = await client.remove(0, 'k0', 10_000, { durability: { level: 1 } });
    expect(removed.status).toBe(p.Status.Success);
    expect(a.store.vbucket(0).get(Buffer.from('k0'))).toBeUndefined();
  });

  it('answers SYNC_WRITE_AMBIGUOUS at the timeout when the replica is not streaming, and aborts the prepare', async () => {
    const { a, client, clock, replicator } = await pair();
    await replicator.close();
    const pending = client.set(0, 'lonely', 'v', 10_000, { durability: { level: 1 } });
    for (let i = 0; i < 20 && a.durability.monitor(0)!.pending.length === 0; i++)
      await new Promise((r) => setTimeout(r, 5));
    expect(a.durability.monitor(0)!.pending).toHaveLength(1);
    clock.advance(1_000);
    expect((await pending).status).toBe(p.Status.SyncWriteAmbiguous);
    expect(a.store.vbucket(0).get(Buffer.from('lonely'))).toBeUndefined();
    expect(a.store.vbucket(0).inFlightPrepares()).toHaveLength(0);
  });
});
