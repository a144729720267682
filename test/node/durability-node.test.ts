import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

const MAJORITY = { durability: { level: p.DurabilityLevel.Majority } };

interface Rig {
  node: StorageNode;
  self: string;
  clock: ManualClock;
  client(): Promise<NodeClient>;
}

async function rig(options: { timeoutMs?: number; dataDir?: string } = {}): Promise<Rig> {
  const clock = new ManualClock();
  const node = await StorageNode.start({
    dataDir: options.dataDir,
    syncIntervalMs: options.dataDir ? 5 : undefined,
    host: '127.0.0.1',
    port: 0,
    vbuckets: 4,
    active: [0],
    replica: [1],
    auth: noAuth,
    durabilityClock: clock,
    durabilityTimeoutMs: options.timeoutMs ?? 1_000,
  });
  cleanups.push(() => node.stop());
  return {
    node,
    clock,
    self: `127.0.0.1:${node.address.port}`,
    async client() {
      const client = await NodeClient.connect({ host: '127.0.0.1', port: node.address.port });
      cleanups.push(() => client.close());
      return client;
    },
  };
}

async function setTopology(
  client: NodeClient,
  vbucket: number,
  chain: (string | null)[],
  state: p.VBucketState = p.VBucketState.Active,
): Promise<number> {
  const opaque = client.conn.allocateOpaque();
  const value = Buffer.from(JSON.stringify({ topology: [chain] }));
  const frame = await client.raw(
    p.encodeSetVBucket({ opaque, vbucket, state, value }),
    opaque,
    p.Opcode.SET_VBUCKET,
  );
  return frame.status;
}

/** Lets the node run what is ready (replies in flight, timers of the real loop). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

describe('durable writes on a node', () => {
  it('commits a majority write at once on a one-node chain and answers with the commit CAS and seqno', async () => {
    const r = await rig();
    const client = await r.client();
    expect(await setTopology(client, 0, [r.self])).toBe(p.Status.Success);
    const opaque = client.conn.allocateOpaque();
    const hello = await client.raw(
      p.encodeHello({
        opaque,
        agent: 't',
        features: [p.HelloFeature.MutationSeqno, p.HelloFeature.SyncReplication],
      }),
      opaque,
      p.Opcode.HELLO,
    );
    expect(p.decodeHelloResponse(hello).features).toContain(p.HelloFeature.SyncReplication);
    const reply = await client.set(0, 'k', 'v', 5_000, MAJORITY);
    expect(reply.status).toBe(p.Status.Success);
    const vb = r.node.store.vbucket(0);
    // the prepare at seqno 1, its commit at 2: the client sees the commit
    expect(reply.mutationToken?.seqno).toBe(2n);
    expect(reply.cas).toBe(vb.get(Buffer.from('k'))!.cas);
    expect((await client.get(0, 'k')).value.toString()).toBe('v');
    const stats = await client.stats('vbucket-seqno 0');
    expect(stats.get('vb_0:high_prepared_seqno')).toBe('1');
  });

  it('answers a persistToMajority write on a durable node once the fsync covering its prepare is done', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-durability-'));
    cleanups.push(async () => fs.rmSync(dataDir, { recursive: true, force: true }));
    const r = await rig({ dataDir });
    const client = await r.client();
    await setTopology(client, 0, [r.self]);
    for (const level of [p.DurabilityLevel.MajorityAndPersistOnMaster, p.DurabilityLevel.PersistToMajority]) {
      const reply = await client.set(0, `k${level}`, 'v', 5_000, { durability: { level } });
      expect(reply.status).toBe(p.Status.Success);
      expect(r.node.store.vbucket(0).persistedSeqno).toBeGreaterThanOrEqual(
        r.node.store.vbucket(0).highPreparedSeqno,
      );
    }
  });

  it('answers DURABILITY_IMPOSSIBLE with no topology, or one whose defined nodes cannot make a majority', async () => {
    const r = await rig();
    const client = await r.client();
    expect((await client.set(0, 'k', 'v', 5_000, MAJORITY)).status).toBe(p.Status.DurabilityImpossible);
    await setTopology(client, 0, [r.self, null]);
    expect((await client.set(0, 'k', 'v', 5_000, MAJORITY)).status).toBe(p.Status.DurabilityImpossible);
    expect((await client.remove(0, 'k', 5_000, MAJORITY)).status).toBe(p.Status.DurabilityImpossible);
    expect(r.node.store.vbucket(0).highSeqno).toBe(0n);
  });

  it('answers DURABILITY_INVALID_LEVEL to a level outside 1-3', async () => {
    const r = await rig();
    const client = await r.client();
    await setTopology(client, 0, [r.self]);
    for (const level of [0, 4])
      expect((await client.set(0, 'k', 'v', 5_000, { durability: { level } })).status).toBe(
        p.Status.DurabilityInvalidLevel,
      );
  });

  it('closes only the connection that sends malformed frame infos', async () => {
    const r = await rig();
    const bad = await r.client();
    const good = await r.client();
    const opaque = bad.conn.allocateOpaque();
    const frame = p.encodeStore({
      opcode: p.Opcode.SET,
      opaque,
      vbucket: 0,
      cas: 0n,
      flags: 0,
      expiration: 0,
      datatype: 0,
      key: Buffer.from('k'),
      value: Buffer.from('v'),
      framingExtras: Buffer.from([0x12, 0x01, 0x00]), // durability of 2 bytes: neither 1 nor 3
    });
    await expect(bad.raw(frame, opaque, p.Opcode.SET)).rejects.toThrow();
    expect((await good.set(0, 'k', 'v')).status).toBe(p.Status.Success);
  });

  it('aborts a prepare no replica acknowledges at its timeout and answers SYNC_WRITE_AMBIGUOUS; writes to its key meanwhile answer SYNC_WRITE_IN_PROGRESS', async () => {
    const r = await rig({ timeoutMs: 1_000 });
    const writer = await r.client();
    const other = await r.client();
    await setTopology(writer, 0, [r.self, 'replica:1']);
    const pending = writer.set(0, 'k', 'v', 5_000, MAJORITY);
    await settle();
    expect((await other.set(0, 'k', 'plain')).status).toBe(p.Status.SyncWriteInProgress);
    expect((await other.set(0, 'k', 'durable', 5_000, MAJORITY)).status).toBe(p.Status.SyncWriteInProgress);
    expect((await other.remove(0, 'k')).status).toBe(p.Status.SyncWriteInProgress);
    // another key is not held up by the prepare
    expect((await other.set(0, 'k2', 'plain')).status).toBe(p.Status.Success);
    r.clock.advance(999);
    await settle();
    let answered = false;
    void pending.then(() => {
      answered = true;
    });
    await settle();
    expect(answered).toBe(false);
    r.clock.advance(1);
    expect((await pending).status).toBe(p.Status.SyncWriteAmbiguous);
    expect((await other.get(0, 'k')).status).toBe(p.Status.KeyEnoent);
    expect(r.node.store.vbucket(0).get(Buffer.from('k'))).toBeUndefined();
    // aborted: the key takes writes again
    expect((await other.set(0, 'k', 'after')).status).toBe(p.Status.Success);
  });

  it("uses the request's own timeout over the node default", async () => {
    const r = await rig({ timeoutMs: 60_000 });
    const client = await r.client();
    await setTopology(client, 0, [r.self, 'replica:1']);
    const pending = client.set(0, 'k', 'v', 5_000, { durability: { level: 1, timeoutMs: 50 } });
    await settle();
    r.clock.advance(50);
    expect((await pending).status).toBe(p.Status.SyncWriteAmbiguous);
  });

  it('commits once the replica named in the topology acknowledges the prepare', async () => {
    const r = await rig();
    const client = await r.client();
    await setTopology(client, 0, [r.self, 'replica:1']);
    const pending = client.set(0, 'k', 'v', 5_000, MAJORITY);
    await settle();
    const vb = r.node.store.vbucket(0);
    r.node.durability.ack('someone-else', 0, vb.highPreparedSeqno);
    await settle();
    expect(r.node.durability.monitor(0)?.pending).toHaveLength(1);
    r.node.durability.ack('replica:1', 0, vb.highPreparedSeqno);
    const reply = await pending;
    expect(reply.status).toBe(p.Status.Success);
    expect((await client.get(0, 'k')).value.toString()).toBe('v');
  });

  it('commits a waiting prepare when an active → active SET_VBUCKET brings a topology that makes its majority, without changing the state', async () => {
    const r = await rig();
    const writer = await r.client();
    const admin = await r.client();
    await setTopology(admin, 0, [r.self, 'replica:1']);
    const failoverLog = r.node.store.vbucket(0).failoverLog.length;
    const pending = writer.set(0, 'k', 'v', 5_000, MAJORITY);
    await settle();
    expect(await setTopology(admin, 0, [r.self])).toBe(p.Status.Success);
    expect((await pending).status).toBe(p.Status.Success);
    expect(r.node.store.vbucket(0).failoverLog.length).toBe(failoverLog);
  });

  it('answers SYNC_WRITE_AMBIGUOUS to a waiting writer when the vBucket stops being active', async () => {
    const r = await rig();
    const writer = await r.client();
    const admin = await r.client();
    await setTopology(admin, 0, [r.self, 'replica:1']);
    const pending = writer.set(0, 'k', 'v', 5_000, MAJORITY);
    await settle();
    expect(await admin.setVBucket(0, p.VBucketState.Replica)).toBe(p.Status.Success);
    expect((await pending).status).toBe(p.Status.SyncWriteAmbiguous);
  });

  it('answers the requests after a durable write on its connection only after it, in order', async () => {
    const r = await rig();
    const client = await r.client();
    await setTopology(client, 0, [r.self, 'replica:1']);
    const order: string[] = [];
    const durable = client.set(0, 'a', '1', 5_000, MAJORITY).then((x) => {
      order.push('durable');
      return x;
    });
    const plain = client.set(0, 'b', '2').then(() => order.push('plain'));
    await settle();
    expect(order).toEqual([]);
    r.node.durability.ack('replica:1', 0, r.node.store.vbucket(0).highPreparedSeqno);
    await Promise.all([durable, plain]);
    expect(order).toEqual(['durable', 'plain']);
  });

  it('re-commits a prepare in flight at promotion, never aborting it, and answers SYNC_WRITE_RE_COMMIT_IN_PROGRESS to its key until then', async () => {
    const r = await rig({ timeoutMs: 100 });
    const client = await r.client();
    const replica = r.node.store.vbucket(1);
    // what a replica holds after DCP_PREPARE: a prepare in flight, nothing committed
    replica.apply({
      key: Buffer.from('doc'),
      value: Buffer.from('pending'),
      flags: 0,
      expiry: 0,
      cas: 77n,
      revSeqno: 1n,
      bySeqno: 1n,
      deleted: false,
      datatype: 0,
      sync: { kind: 'prepare', level: p.DurabilityLevel.Majority },
    });
    expect(replica.inFlightPrepares()).toHaveLength(1);
    expect(await setTopology(client, 1, [r.self, 'replica:1'])).toBe(p.Status.Success);
    const monitor = r.node.durability.monitor(1)!;
    expect(monitor.pending).toEqual([1n]);
    expect((await client.get(1, 'doc')).status).toBe(p.Status.SyncWriteReCommitInProgress);
    expect((await client.set(1, 'doc', 'x')).status).toBe(p.Status.SyncWriteReCommitInProgress);
    expect((await client.set(1, 'other', 'x')).status).toBe(p.Status.Success);
    r.clock.advance(60_000);
    await settle();
    expect(monitor.pending).toEqual([1n]);
    r.node.durability.ack('replica:1', 1, 1n);
    const got = await client.get(1, 'doc');
    expect(got.status).toBe(p.Status.Success);
    expect(got.value.toString()).toBe('pending');
  });

  it('says durableWrite in the bucket capabilities', async () => {
    const r = await rig();
    const config = JSON.parse(r.node.bucketConfig.current().json.toString()) as {
      bucketCapabilities: string[];
    };
    expect(config.bucketCapabilities).toContain('durableWrite');
  });
});
