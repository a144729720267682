import { afterEach, describe, expect, it } from 'vitest';
import { userAuth } from '../../src/node/auth.js';
import { AgentCommandError, NodeClient } from '../../src/node/client.js';
import { StorageNode } from '../../src/node/node.js';
import {
  Datatype,
  encodeFrame,
  Opcode,
  StaleEpochError,
  VBucketState,
  vbucketStateName,
} from '../../src/protocol/index.js';

const AUTH = { user: 'admin', password: 'agent-pw' };
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function node(
  active: number[] = [],
  extra: { refuseTakeoverStates?: number } = {},
): Promise<{ node: StorageNode; address: string; client: NodeClient }> {
  const started = await StorageNode.start({
    ...extra,
    host: '127.0.0.1',
    port: 0,
    vbuckets: 8,
    active,
    auth: userAuth(new Map([[AUTH.user, AUTH.password]])),
    peerCredentials: AUTH,
  });
  cleanups.push(() => started.stop());
  const client = await NodeClient.connect({ host: '127.0.0.1', port: started.address.port }, AUTH);
  cleanups.push(() => client.close());
  return { node: started, address: `127.0.0.1:${started.address.port}`, client };
}

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function highSeqnos(client: NodeClient): Promise<bigint[]> {
  return (await client.vbucketStates()).map((r) => r.highSeqno);
}

describe("a node's replication agent", () => {
  it('streams the vBuckets the manager names from their source, and reports them open', async () => {
    const a = await node([0, 1, 2, 3]);
    const b = await node();
    for (let i = 0; i < 200; i++) await a.client.set(i % 4, `k${i}`, `v${i}`);
    for (const vb of [0, 1, 2, 3])
      expect(await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 5 })).toBe(0);
    await b.client.setReplication(5, { [a.address]: [0, 1, 2, 3] });
    const source = await highSeqnos(a.client);
    await until(async () => {
      const mine = await highSeqnos(b.client);
      return [0, 1, 2, 3].every((vb) => mine[vb] === source[vb]);
    }, 'the replicas to catch up');
    const status = await b.client.replicationStatus();
    expect(status.epoch).toBe(5);
    expect(status.sources[a.address]?.wanted).toEqual([0, 1, 2, 3]);
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.length === 4,
      'open streams',
    );
    expect((await b.client.replicationStatus()).itemsReceived).toBeGreaterThanOrEqual(200);
    // later writes follow
    await a.client.set(2, 'late', 'value');
    await until(
      async () => (await highSeqnos(b.client))[2] === (await highSeqnos(a.client))[2],
      'the late write',
    );
  });

  it('stops the streams of a source the topology no longer names', async () => {
    const a = await node([0, 1]);
    const b = await node();
    for (const vb of [0, 1]) await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 2 });
    await b.client.setReplication(2, { [a.address]: [0, 1] });
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.length === 2,
      'open',
    );
    await b.client.setReplication(2, {});
    expect((await b.client.replicationStatus()).sources).toEqual({});
    await a.client.set(0, 'after', 'stop');
    await new Promise((r) => setTimeout(r, 200));
    expect((await highSeqnos(b.client))[0]).toBeLessThan((await highSeqnos(a.client))[0]!);
  });

  it('takes a vBucket over from its source when asked: it is active with every write, the source dead', async () => {
    const a = await node([0, 1]);
    const b = await node();
    for (let i = 0; i < 100; i++) await a.client.set(0, `k${i}`, `v${i}`);
    for (const vb of [0, 1]) await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 7 });
    await b.client.setReplication(7, { [a.address]: [0, 1] });
    const result = await b.client.takeoverFrom(7, 0, a.address, 20_000);
    expect(result.ms).toBeGreaterThanOrEqual(0);
    const statesA = (await a.client.vbucketStates()).map((r) => vbucketStateName(r.state));
    const statesB = (await b.client.vbucketStates()).map((r) => vbucketStateName(r.state));
    expect(statesA[0]).toBe('dead');
    expect(statesB[0]).toBe('active');
    expect(statesA[1]).toBe('active');
    for (let i = 0; i < 100; i++) expect((await b.client.get(0, `k${i}`)).value?.toString()).toBe(`v${i}`);
    // the vBucket taken over is not streamed in any more; the other still is
    expect((await b.client.replicationStatus()).sources[a.address]?.wanted).toEqual([1]);
  });

  it('does not stream a vBucket as a replica while it is being taken over, even if a topology naming it arrives meanwhile', async () => {
    const a = await node([0, 1]);
    const b = await node();
    for (let i = 0; i < 100; i++) await a.client.set(0, `k${i}`, `v${i}`);
    for (const vb of [0, 1]) await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 7 });
    await b.client.setReplication(7, { [a.address]: [0, 1] });
    // the manager's topology push goes on another connection than its takeover (both in flight at once)
    const pusher = await NodeClient.connect({ host: '127.0.0.1', port: b.node.address.port }, AUTH);
    cleanups.push(() => pusher.close());
    const takeover = b.client.takeoverFrom(7, 0, a.address, 20_000);
    await new Promise((r) => setTimeout(r, 1));
    await pusher.setReplication(7, { [a.address]: [0, 1] });
    await takeover;
    expect(vbucketStateName((await b.client.vbucketStates())[0]!.state)).toBe('active');
    expect(vbucketStateName((await a.client.vbucketStates())[0]!.state)).toBe('dead');
    expect((await b.client.replicationStatus()).sources[a.address]?.wanted).toEqual([1]);
  });

  it('streams a vBucket again after its takeover failed, as the topology last applied names it', async () => {
    const a = await node([0, 1]);
    const b = await node([], { refuseTakeoverStates: 1_000 });
    for (const vb of [0, 1]) await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 7 });
    await b.client.setReplication(7, { [a.address]: [0, 1] });
    await a.client.set(0, 'before', 'v');
    await until(async () => (await highSeqnos(b.client))[0] === 1n, 'the first write');
    await expect(b.client.takeoverFrom(7, 0, a.address, 1_500)).rejects.toBeInstanceOf(AgentCommandError);
    expect(vbucketStateName((await a.client.vbucketStates())[0]!.state)).toBe('active');
    // no new topology: the manager retries the move with the one it pushed
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.wanted.includes(0) ?? false,
      'vb 0 wanted again',
    );
    await a.client.set(0, 'after', 'v');
    await until(
      async () => (await highSeqnos(b.client))[0] === (await highSeqnos(a.client))[0],
      'the later write',
    );
  });

  it('refuses a topology or a takeover from an older manager epoch, and one with no epoch once managed', async () => {
    const a = await node([0]);
    const b = await node();
    await b.client.setReplication(9, {});
    await expect(b.client.setReplication(8, { [a.address]: [0] })).rejects.toBeInstanceOf(StaleEpochError);
    await expect(b.client.takeoverFrom(8, 0, a.address, 1_000)).rejects.toBeInstanceOf(StaleEpochError);
    expect((await b.client.replicationStatus()).epoch).toBe(9);
  });

  it('answers a takeover it could not do with takeover-failed, leaving the source active', async () => {
    const a = await node([0]);
    const b = await node();
    await b.client.setVBucket(0, VBucketState.Replica, { epoch: 3 });
    // vb 1 is dead on the source: there is nothing to take over
    const error = await b.client.takeoverFrom(3, 1, a.address, 2_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AgentCommandError);
    expect(['takeover-failed', 'takeover-unknown']).toContain((error as AgentCommandError).ref);
    expect(vbucketStateName((await a.client.vbucketStates())[0]!.state)).toBe('active');
  });

  it('closes only the connection that sends a malformed topology (a vBucket under two sources)', async () => {
    const a = await node([0]);
    const b = await node();
    const bad = await NodeClient.connect({ host: '127.0.0.1', port: b.node.address.port }, AUTH);
    cleanups.push(() => bad.close());
    const value = Buffer.from(
      JSON.stringify({ epoch: 1, sources: { [a.address]: [0], '127.0.0.1:1': [0] } }),
    );
    const opaque = bad.conn.allocateOpaque();
    await expect(
      bad.raw(
        encodeFrame({ opcode: Opcode.DCPX_SET_REPLICATION, opaque, datatype: Datatype.Json, value }),
        opaque,
        Opcode.DCPX_SET_REPLICATION,
      ),
    ).rejects.toThrow();
    // the node and its other connections carry on
    expect((await b.client.replicationStatus()).sources).toEqual({});
  });
});

describe('a failed-over copy that comes back as a replica', () => {
  it('rolls back what the new active never had and streams only the missing part', async () => {
    const a = await node([0]);
    const b = await node();
    for (let i = 0; i < 300; i++) await a.client.set(0, `k${i}`, `v${i}`);
    await b.client.setVBucket(0, VBucketState.Replica, { epoch: 2 });
    await b.client.setReplication(2, { [a.address]: [0] });
    await until(async () => (await highSeqnos(b.client))[0] === 300n, 'the replica to catch up');
    // replication stops (the old active is cut off), and it takes writes nobody else sees
    await b.client.setReplication(2, {});
    for (let i = 0; i < 10; i++) await a.client.set(0, `lost${i}`, 'only-on-a');
    // hard failover: the replica is promoted (a new failover-log entry at 300) and takes writes
    await b.client.setVBucket(0, VBucketState.Active, { epoch: 3 });
    for (let i = 0; i < 20; i++) await b.client.set(0, `new${i}`, 'on-b');
    // recovery: the old active becomes a replica of the new one and streams from its own position
    await a.client.setVBucket(0, VBucketState.Replica, { epoch: 3 });
    const before = (await a.client.replicationStatus()).itemsReceived;
    await a.client.setReplication(3, { [b.address]: [0] });
    await until(
      async () => (await highSeqnos(a.client))[0] === (await highSeqnos(b.client))[0],
      'catch-up',
      15_000,
    );
    // the copies are the same (what only the old active had is gone: rolled back), by the node's digest
    const digest = async (client: NodeClient) => [...(await client.stats('vbucket-digest 0'))];
    expect(await digest(a.client)).toEqual(await digest(b.client));
    const received = (await a.client.replicationStatus()).itemsReceived - before;
    expect(received).toBeLessThan(30); // 20 mutations + markers, not the 300 items again
  });
});

describe('a vBucket whose source changes', () => {
  it('is streamed from the new source even while the old one still streams it', async () => {
    const a = await node([0, 1, 2, 3]);
    const c = await node([4, 5, 6, 7]);
    const b = await node();
    for (const vb of [0, 1, 2, 3, 4, 5, 6, 7])
      await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 4 });
    for (let i = 0; i < 80; i++) await a.client.set(i % 4, `k${i}`, `v${i}`);
    await b.client.setReplication(4, { [a.address]: [0, 1, 2, 3] });
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.length === 4,
      'open',
    );
    // in one change: vBuckets 0-1 stay on a, and b also streams c's 4-7 (c's first vBuckets were a's)
    for (let round = 0; round < 5; round++) {
      await b.client.setReplication(4, { [c.address]: [4, 5, 6, 7], [a.address]: [0, 1, 2, 3] });
      await b.client.setReplication(4, { [a.address]: [0, 1, 2, 3, 4, 5, 6, 7].filter((vb) => vb < 4) });
    }
    await b.client.setReplication(4, { [c.address]: [4, 5, 6, 7], [a.address]: [0, 1, 2, 3] });
    for (let i = 0; i < 40; i++) await c.client.set(4 + (i % 4), `c${i}`, 'on-c');
    await until(async () => {
      const [mine, fromA, fromC] = [
        await highSeqnos(b.client),
        await highSeqnos(a.client),
        await highSeqnos(c.client),
      ];
      return (
        [0, 1, 2, 3].every((vb) => mine[vb] === fromA[vb]) &&
        [4, 5, 6, 7].every((vb) => mine[vb] === fromC[vb])
      );
    }, 'every replica to catch up');
  });

  it('is streamed from the new source: the old stream is closed before the new one is added', async () => {
    const a = await node([0, 1, 2, 3]);
    const c = await node();
    const b = await node();
    // c holds copies of a's vBuckets and becomes their active (a takeover by c, as a rebalance does)
    for (const vb of [0, 1, 2, 3]) {
      await c.client.setVBucket(vb, VBucketState.Replica, { epoch: 4 });
      await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 4 });
    }
    for (let i = 0; i < 100; i++) await a.client.set(i % 4, `k${i}`, `v${i}`);
    await c.client.setReplication(4, { [a.address]: [0, 1, 2, 3] });
    await b.client.setReplication(4, { [a.address]: [0, 1, 2, 3] });
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.length === 4,
      'open',
    );
    for (const vb of [0, 1, 2, 3]) await c.client.takeoverFrom(4, vb, a.address, 20_000);
    // b's copies are re-pointed from a to c in one topology change
    await b.client.setReplication(4, { [c.address]: [0, 1, 2, 3] });
    for (let i = 0; i < 40; i++) await c.client.set(i % 4, `after${i}`, 'on-c');
    await until(async () => {
      const [mine, theirs] = [await highSeqnos(b.client), await highSeqnos(c.client)];
      return [0, 1, 2, 3].every((vb) => mine[vb] === theirs[vb]);
    }, 'the re-pointed replicas to catch up with the new active');
    expect((await b.client.replicationStatus()).sources[c.address]?.open).toEqual([0, 1, 2, 3]);
  });
});

describe('a takeover asked by a newer manager', () => {
  it('keeps the other incoming streams (on replicators that carry the new epoch)', async () => {
    const a = await node([0, 1]);
    const b = await node();
    for (const vb of [0, 1]) await b.client.setVBucket(vb, VBucketState.Replica, { epoch: 5 });
    await b.client.setReplication(5, { [a.address]: [0, 1] });
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.length === 2,
      'open',
    );
    await b.client.takeoverFrom(6, 0, a.address, 20_000);
    const status = await b.client.replicationStatus();
    expect(status.epoch).toBe(6);
    expect(status.sources[a.address]?.wanted).toEqual([1]);
    await until(
      async () => (await b.client.replicationStatus()).sources[a.address]?.open.includes(1) === true,
      'vb 1 streaming again',
    );
  });
});
