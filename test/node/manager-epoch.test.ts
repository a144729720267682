import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { noAuth } from '../../src/node/auth.js';
import { NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import * as p from '../../src/protocol/index.js';
import { Replicator, TakeoverError } from '../../src/proxy/replicator.js';

// The storage-node side of manager fencing (DESIGN.md "Cluster operations"): a node keeps the highest
// manager epoch it has seen and refuses vBucket-state changes and replication set-up from a lower one,
// over a real socket.

const nodes: StorageNode[] = [];
const clients: NodeClient[] = [];
const dirs: string[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(nodes.splice(0).map((n) => n.stop()));
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

async function startNode(
  options: Partial<Parameters<typeof StorageNode.start>[0]> = {},
): Promise<StorageNode> {
  const node = await StorageNode.start({
    port: 0,
    auth: noAuth,
    vbuckets: 4,
    active: [0, 1],
    replica: [2, 3],
    ...options,
  });
  nodes.push(node);
  return node;
}
const at = (node: StorageNode) => ({ host: '127.0.0.1', port: node.address.port });
async function connect(node: StorageNode): Promise<NodeClient> {
  const c = await NodeClient.connect({ host: '127.0.0.1', port: node.address.port });
  clients.push(c);
  return c;
}

/** A raw request on `c`; the answer frame as it came. */
async function send(c: NodeClient, opcode: number, build: (opaque: number) => Buffer): Promise<p.Frame> {
  const opaque = c.conn.allocateOpaque();
  return c.raw(build(opaque), opaque, opcode);
}
function dcpOpen(c: NodeClient, flags: number, epoch?: number): Promise<p.Frame> {
  return send(c, p.Opcode.DCP_OPEN, (opaque) =>
    p.encodeDcpOpen({
      opaque,
      flags,
      name: `test-${opaque}-${flags}`,
      ...(epoch === undefined ? {} : { value: p.epochValue(epoch, { consumer_name: 'n2' }) }),
    }),
  );
}
function streamReq(c: NodeClient, vbucket: number, flags: number): Promise<p.Frame> {
  return send(c, p.Opcode.DCP_STREAM_REQ, (opaque) =>
    p.encodeStreamReq({
      opaque,
      vbucket,
      flags,
      startSeqno: 0n,
      endSeqno: 0xffff_ffff_ffff_ffffn,
      vbucketUuid: 0n,
      snapStartSeqno: 0n,
      snapEndSeqno: 0n,
    }),
  );
}
function expectStale(frame: p.Frame, context: string): void {
  expect(frame.status).toBe(p.Status.Eaccess);
  expect(frame.datatype).toBe(p.Datatype.Json);
  expect(JSON.parse(frame.value.toString())).toEqual({ error: { context, ref: 'stale-epoch' } });
  expect(p.isStaleEpoch(frame)).toBe(true);
}
const setVb = (vbucket: number, state: p.VBucketState, epoch?: number) => (opaque: number) =>
  p.encodeSetVBucket({
    opaque,
    vbucket,
    state,
    ...(epoch === undefined ? {} : { value: p.epochValue(epoch) }),
  });
const delVb = (vbucket: number, epoch?: number) => (opaque: number) =>
  p.encodeDelVBucket({
    opaque,
    vbucket,
    ...(epoch === undefined ? {} : { value: p.epochValue(epoch), datatype: p.Datatype.Json }),
  });

describe('a node that no manager has fenced yet', () => {
  it('accepts vBucket-state changes and consumer connections without an epoch, as before', async () => {
    const node = await startNode();
    const c = await connect(node);
    expect(await c.setVBucket(2, p.VBucketState.Dead)).toBe(p.Status.Success);
    expect(await c.delVBucket(2)).toBe(p.Status.Success);
    expect((await dcpOpen(await connect(node), 0)).status).toBe(p.Status.Success);
    expect(node.fence.epoch).toBeUndefined();
    expect((node.status() as { managerEpoch: unknown }).managerEpoch).toBeNull();
  });
});

describe('a node fenced by manager epochs', () => {
  it('adopts a higher epoch, then refuses SET_VBUCKET from a lower one or without one with EACCESS and ref stale-epoch', async () => {
    const node = await startNode();
    const c = await connect(node);
    expect(await c.setVBucket(2, p.VBucketState.Pending, { epoch: 5 })).toBe(p.Status.Success);
    expect(node.fence.epoch).toBe(5n);
    expectStale(
      await send(c, p.Opcode.SET_VBUCKET, setVb(2, p.VBucketState.Active, 3)),
      'stale manager epoch 3; this node has seen 5',
    );
    expectStale(
      await send(c, p.Opcode.SET_VBUCKET, setVb(2, p.VBucketState.Active)),
      'no manager epoch; this node has seen 5',
    );
    expect(node.store.vbucket(2).state).toBe(p.VBucketState.Pending); // neither was applied
    await expect(c.setVBucket(2, p.VBucketState.Active, { epoch: 4 })).rejects.toBeInstanceOf(
      p.StaleEpochError,
    );
    expect(await c.setVBucket(2, p.VBucketState.Replica, { epoch: 5 })).toBe(p.Status.Success);
    expect(await c.setVBucket(2, p.VBucketState.Pending, { epoch: 7 })).toBe(p.Status.Success);
    expect(node.fence.epoch).toBe(7n);
    expect((node.status() as { managerEpoch: unknown }).managerEpoch).toBe(7);
    expect(await node.metrics.registry.metrics()).toMatch(/^dcpx_node_manager_epoch 7$/m);
  });

  it('keeps the topology JSON form of SET_VBUCKET working beside the epoch', async () => {
    const node = await startNode();
    const c = await connect(node);
    const reply = await send(c, p.Opcode.SET_VBUCKET, (opaque) =>
      p.encodeSetVBucket({
        opaque,
        vbucket: 3,
        state: p.VBucketState.Active,
        value: p.epochValue(2, { topology: [['n1', 'n2']] }),
      }),
    );
    expect(reply.status).toBe(p.Status.Success);
    expect(node.store.vbucket(3).state).toBe(p.VBucketState.Active);
    expect(node.fence.epoch).toBe(2n);
  });

  it('refuses DEL_VBUCKET from a lower epoch or without one, and leaves the vBucket alone', async () => {
    const node = await startNode();
    const c = await connect(node);
    expect(await c.setVBucket(2, p.VBucketState.Dead, { epoch: 5 })).toBe(p.Status.Success);
    expectStale(
      await send(c, p.Opcode.DEL_VBUCKET, delVb(2, 4)),
      'stale manager epoch 4; this node has seen 5',
    );
    expectStale(await send(c, p.Opcode.DEL_VBUCKET, delVb(2)), 'no manager epoch; this node has seen 5');
    await expect(c.delVBucket(2, { epoch: 1 })).rejects.toMatchObject({
      code: 'DCPX_ERR_STALE_EPOCH',
      context: 'stale manager epoch 1; this node has seen 5',
    });
    expect(await c.delVBucket(2, { epoch: 6 })).toBe(p.Status.Success);
    expect(node.fence.epoch).toBe(6n);
  });

  it('refuses a consumer DCP_OPEN from a lower epoch or without one, and opens one with the current epoch', async () => {
    const node = await startNode();
    const admin = await connect(node);
    await admin.setVBucket(2, p.VBucketState.Replica, { epoch: 5 });
    expectStale(await dcpOpen(await connect(node), 0, 4), 'stale manager epoch 4; this node has seen 5');
    expectStale(await dcpOpen(await connect(node), 0), 'no manager epoch; this node has seen 5');
    expect((await dcpOpen(await connect(node), 0, 5)).status).toBe(p.Status.Success);
    expect((await dcpOpen(await connect(node), 0, 8)).status).toBe(p.Status.Success);
    expect(node.fence.epoch).toBe(8n);
  });

  it('refuses ADD_STREAM on a consumer opened with an epoch a newer manager has since superseded', async () => {
    const node = await startNode();
    const admin = await connect(node);
    const consumer = await connect(node);
    // the node's consumer sends its DCP_CONTROLs here: read (and drop) them, or the connection pauses
    consumer.conn.on('frame', () => {});
    expect((await dcpOpen(consumer, 0, 5)).status).toBe(p.Status.Success);
    await admin.setVBucket(2, p.VBucketState.Replica, { epoch: 6 });
    const refused = await send(consumer, p.Opcode.DCP_ADD_STREAM, (opaque) =>
      p.encodeAddStream({ opaque, vbucket: 3, flags: 0 }),
    );
    expectStale(refused, 'stale manager epoch 5; this node has seen 6');
  });

  it('keeps plain producer streams open to readers without an epoch, and refuses their takeover streams', async () => {
    const node = await startNode();
    const admin = await connect(node);
    await admin.setVBucket(2, p.VBucketState.Replica, { epoch: 5 });
    const reader = await connect(node);
    expect((await dcpOpen(reader, p.OpenFlag.Producer)).status).toBe(p.Status.Success);
    expect((await streamReq(reader, 0, 0)).status).toBe(p.Status.Success);
    expectStale(await streamReq(reader, 1, p.StreamFlag.TakeOver), 'no manager epoch; this node has seen 5');
    expect(node.store.vbucket(1).state).toBe(p.VBucketState.Active);
  });

  it('refuses a takeover stream on a producer opened with an epoch a newer manager has since superseded', async () => {
    const node = await startNode();
    const admin = await connect(node);
    const current = await connect(node);
    expect((await dcpOpen(current, p.OpenFlag.Producer, 5)).status).toBe(p.Status.Success);
    expectStale(
      await dcpOpen(await connect(node), p.OpenFlag.Producer, 4),
      'stale manager epoch 4; this node has seen 5',
    );
    await admin.setVBucket(2, p.VBucketState.Replica, { epoch: 6 });
    expectStale(
      await streamReq(current, 1, p.StreamFlag.TakeOver),
      'stale manager epoch 5; this node has seen 6',
    );
    const fresh = await connect(node);
    expect((await dcpOpen(fresh, p.OpenFlag.Producer, 6)).status).toBe(p.Status.Success);
    expect((await streamReq(fresh, 1, p.StreamFlag.TakeOver)).status).toBe(p.Status.Success);
  });

  it('fails a Replicator of a superseded manager with StaleEpochError at its DCP_OPEN', async () => {
    const a = await startNode();
    const b = await startNode({ active: [], replica: [0, 1, 2, 3] });
    await (await connect(b)).setVBucket(0, p.VBucketState.Replica, { epoch: 9 });
    const stale = new Replicator({ producer: at(a), consumer: at(b), epoch: 8 });
    await expect(stale.connect()).rejects.toBeInstanceOf(p.StaleEpochError);
    await stale.close();
    const current = new Replicator({ producer: at(a), consumer: at(b), epoch: 9 });
    await current.connect();
    await current.close();
  });
});

describe('a Replicator between managed nodes', () => {
  it('takes a vBucket over with the current epoch in both DCP_OPENs and its takeover stream, and not without', async () => {
    const a = await startNode({ active: [0, 1, 2, 3], replica: [] });
    const b = await startNode({ active: [], replica: [0, 1, 2, 3] });
    for (const n of [a, b]) await (await connect(n)).setVBucket(3, p.VBucketState.Dead, { epoch: 4 });
    for (let i = 0; i < 50; i++)
      a.store.vbucket(1).mutate({ op: 'set', key: Buffer.from(`k${i}`), value: Buffer.from('v') });
    const unfenced = new Replicator({ producer: at(a), consumer: at(b) });
    const refused = await unfenced.takeover(1, { attempts: 1 }).catch((e: unknown) => e);
    await unfenced.close();
    expect(refused).toBeInstanceOf(TakeoverError);
    expect((refused as TakeoverError).cause).toBeInstanceOf(p.StaleEpochError);
    expect([a.store.vbucket(1).state, b.store.vbucket(1).state]).toEqual([
      p.VBucketState.Active,
      p.VBucketState.Replica,
    ]);
    const r = new Replicator({ producer: at(a), consumer: at(b), epoch: 4 });
    try {
      expect((await r.takeover(1)).attempts).toBe(1);
    } finally {
      await r.close();
    }
    expect([a.store.vbucket(1).state, b.store.vbucket(1).state]).toEqual([
      p.VBucketState.Dead,
      p.VBucketState.Active,
    ]);
    expect(b.store.vbucket(1).highSeqno).toBe(50n);
  });
});

describe('a Replicator fenced after it connected', () => {
  it('reports its replica streams as fenced and does not retry them', async () => {
    const a = await startNode({ active: [0, 1, 2, 3], replica: [] });
    const b = await startNode({ active: [], replica: [0, 1, 2, 3] });
    const r = new Replicator({
      producer: at(a),
      consumer: at(b),
      epoch: 5,
      streamRetry: { minBackoffMs: 1 },
    });
    try {
      await r.connect();
      await (await connect(b)).setVBucket(3, p.VBucketState.Dead, { epoch: 6 });
      const [result] = await r.setStreams([0]);
      expect(result).toMatchObject({ vbucket: 0, ok: false, fenced: true });
      expect(result?.error).toMatch(/stale manager epoch 5; this node has seen 6/);
      expect(r.retryingStreams).toEqual([]);
      expect(r.streams).toEqual([]);
    } finally {
      await r.close();
    }
  });
});

describe('SET_CLUSTER_CONFIG and GET_CLUSTER_CONFIG on a node', () => {
  const config = (rev: number) => JSON.stringify({ rev, nodesExt: [{ services: { kv: 12000 } }] });
  /** What the node serves of a pushed config: its JSON with the push's rev and revEpoch, and the bucket name. */
  const served = (rev: number, epoch: number) => ({
    ...JSON.parse(config(rev)),
    rev,
    revEpoch: epoch,
    name: 'default',
  });
  const parsed = (value: Buffer | undefined) => JSON.parse(value?.toString() ?? 'null');

  it('answers its one-node config while no config is stored, then the stored config with datatype JSON', async () => {
    const node = await startNode();
    const c = await connect(node);
    const none = await send(c, p.Opcode.GET_CLUSTER_CONFIG, (opaque) => p.encodeGetClusterConfig({ opaque }));
    expect(none.status).toBe(p.Status.Success);
    expect(parsed(none.value)).toMatchObject({ revEpoch: -1, nodesExt: [{ hostname: '$HOST' }] });
    await c.setClusterConfig(3, 10, config(10));
    const got = await send(c, p.Opcode.GET_CLUSTER_CONFIG, (opaque) => p.encodeGetClusterConfig({ opaque }));
    expect(got.datatype).toBe(p.Datatype.Json);
    expect(parsed(got.value)).toEqual(served(10, 3));
    expect(node.fence.epoch).toBe(3n);
    const known = await send(c, p.Opcode.GET_CLUSTER_CONFIG, (opaque) =>
      p.encodeGetClusterConfig({ opaque, known: { epoch: 3n, revision: 10n } }),
    );
    expect([known.status, known.valueLength]).toEqual([p.Status.Success, 0]);
  });

  it('refuses a lower epoch, ignores an older revision of the same epoch with Success, and takes a newer one', async () => {
    const node = await startNode();
    const c = await connect(node);
    await c.setClusterConfig(5, 10, config(10));
    await expect(c.setClusterConfig(4, 99, config(99))).rejects.toMatchObject({
      code: 'DCPX_ERR_STALE_EPOCH',
      context: 'stale manager epoch 4; this node has seen 5',
    });
    await c.setClusterConfig(5, 9, config(9)); // an idempotent re-push of an older one: Success, ignored
    expect(parsed(await c.getClusterConfig())).toEqual(served(10, 5));
    await c.setClusterConfig(5, 11, config(11));
    expect(parsed(await c.getClusterConfig())).toEqual(served(11, 5));
    await c.setClusterConfig(6, 1, config(1)); // a new epoch starts its revisions anew
    expect(parsed(await c.getClusterConfig())).toEqual(served(1, 6));
    expect(node.fence.epoch).toBe(6n);
  });

  it('keeps epoch and config across a restart on the same data dir', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-epoch-'));
    dirs.push(dir);
    const first = await startNode({ dataDir: dir });
    const c = await connect(first);
    await c.setClusterConfig(4, 2, config(2));
    expect(await c.setVBucket(2, p.VBucketState.Pending, { epoch: 7 })).toBe(p.Status.Success);
    await c.close();
    await first.stop();
    nodes.splice(nodes.indexOf(first), 1);
    const again = await startNode({ dataDir: dir });
    expect(again.fence.epoch).toBe(7n);
    const d = await connect(again);
    expect(parsed(await d.getClusterConfig())).toEqual(served(2, 4));
    expectStale(
      await send(d, p.Opcode.SET_VBUCKET, setVb(2, p.VBucketState.Active, 6)),
      'stale manager epoch 6; this node has seen 7',
    );
  });
});

describe('NodeClient.vbucketStates', () => {
  it('reads every vBucket state and high seqno in one STAT round trip', async () => {
    const node = await startNode();
    const c = await connect(node);
    await c.set(0, 'a', 'x');
    await c.set(0, 'b', 'y');
    await c.set(1, 'c', 'z');
    expect(await c.vbucketStates()).toEqual([
      { vb: 0, state: p.VBucketState.Active, highSeqno: 2n, highPreparedSeqno: 0n },
      { vb: 1, state: p.VBucketState.Active, highSeqno: 1n, highPreparedSeqno: 0n },
      { vb: 2, state: p.VBucketState.Replica, highSeqno: 0n, highPreparedSeqno: 0n },
      { vb: 3, state: p.VBucketState.Replica, highSeqno: 0n, highPreparedSeqno: 0n },
    ]);
  });
});
