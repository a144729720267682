import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterCallError } from '../../src/cluster/types.js';
import type { StorageNode } from '../../src/node/node.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { addressOf, convergenceProblems, range, startManager, startNodes, statesOf } from './fixture.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VBS = 8;

async function cluster(layouts: { active?: number[]; replica?: number[] }[]) {
  const nodes = await startNodes(VBS, layouts);
  cleanups.push(() => Promise.all(nodes.map((n) => n.stop())));
  const shared = new MemoryMetadata();
  const client = shared.client();
  const manager = await startManager('m1', client);
  cleanups.push(() => manager.handle.close());
  await manager.leading;
  await manager.handle.settled();
  return { nodes, shared, manager, core: manager.handle.core };
}

function add(node: StorageNode, opId: string) {
  return { opId, kind: 'add-node' as const, node: addressOf(node) };
}
function remove(node: StorageNode, opId: string) {
  return { opId, kind: 'remove-node' as const, node: addressOf(node) };
}

describe('topology operations on the leader', () => {
  it('adds nodes that hold data, adopting their copies into the map, and removes one again', async () => {
    const { nodes, core, manager } = await cluster([{ active: range(VBS) }, { replica: range(VBS) }, {}]);
    const [a, b] = nodes as [StorageNode, StorageNode];
    expect(await core.submit(add(a, 'op-a'))).toEqual({ opId: 'op-a', outcome: 'done' });
    expect(await core.submit(add(b, 'op-b'))).toEqual({ opId: 'op-b', outcome: 'done' });
    let status = await core.status();
    expect(status.leader).toBe('m1');
    expect(status.nodes.map((n) => [n.address, n.state])).toEqual(
      [
        [addressOf(a), 'added'],
        [addressOf(b), 'added'],
      ].sort(),
    );
    expect(status.map).toEqual(range(VBS).map(() => [addressOf(a), addressOf(b)]));
    expect(status.unfinishedOperation).toBeNull();

    expect(await core.submit(remove(b, 'op-rb'))).toEqual({ opId: 'op-rb', outcome: 'done' });
    await manager.handle.settled();
    status = await core.status();
    expect(status.nodes.map((n) => n.address)).toEqual([addressOf(a)]);
    expect(status.map).toEqual(range(VBS).map(() => [addressOf(a)]));
    expect(statesOf(b)).toEqual(range(VBS).map(() => 'dead'));
    expect(convergenceProblems(status, nodes)).toEqual([]);
  });

  it('forms a map from nodes that joined holding actives and replicas of each other', async () => {
    const half = range(VBS / 2);
    const otherHalf = half.map((vb) => vb + VBS / 2);
    const { nodes, core, manager } = await cluster([
      { active: half, replica: otherHalf },
      { active: otherHalf, replica: half },
    ]);
    const [a, b] = nodes as [StorageNode, StorageNode];
    await core.submit(add(a, 'op-a'));
    await core.submit(add(b, 'op-b'));
    await manager.handle.settled();
    const status = await core.status();
    expect(status.map).toEqual([
      ...half.map(() => [addressOf(a), addressOf(b)]),
      ...otherHalf.map(() => [addressOf(b), addressOf(a)]),
    ]);
    expect(convergenceProblems(status, nodes)).toEqual([]);
  });

  it('promotes the remaining copy when the active node is removed', async () => {
    const { nodes, core, manager } = await cluster([{ active: range(VBS) }, { replica: range(VBS) }]);
    const [a, b] = nodes as [StorageNode, StorageNode];
    await core.submit(add(a, 'op-a'));
    await core.submit(add(b, 'op-b'));
    await core.submit(remove(a, 'op-ra'));
    await manager.handle.settled();
    const status = await core.status();
    expect(status.map).toEqual(range(VBS).map(() => [addressOf(b)]));
    expect(statesOf(b)).toEqual(range(VBS).map(() => 'active'));
    expect(statesOf(a)).toEqual(range(VBS).map(() => 'dead'));
  });

  it('refuses, permanently and in one line, to remove the node holding the only copy of a vBucket', async () => {
    const { nodes, core } = await cluster([{ active: range(VBS) }]);
    const [a] = nodes as [StorageNode];
    await core.submit(add(a, 'op-a'));
    const refusal = await core.submit(remove(a, 'op-ra')).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(ClusterCallError);
    expect((refusal as ClusterCallError).errorClass).toBe('permanent');
    expect((refusal as ClusterCallError).message).toMatch(
      /^removing 127\.0\.0\.1:\d+ would leave vBuckets 0,1,.* with no copy$/,
    );
    expect((await core.status()).nodes).toHaveLength(1);
    expect(statesOf(a)).toEqual(range(VBS).map(() => 'active'));
  });

  it('answers a repeated op id with the first result without running it again', async () => {
    const { nodes, core, shared } = await cluster([{ active: range(VBS) }, { replica: range(VBS) }]);
    const [a, b] = nodes as [StorageNode, StorageNode];
    await core.submit(add(a, 'op-a'));
    await core.submit(add(b, 'op-b'));
    await core.submit(remove(b, 'op-rb'));
    const writes = shared.committed.length;
    // the same id again after the node left: the first result, and b stays out
    expect(await core.submit(add(b, 'op-b'))).toEqual({ opId: 'op-b', outcome: 'done' });
    expect(shared.committed.length).toBe(writes);
    expect((await core.status()).nodes.map((n) => n.address)).toEqual([addressOf(a)]);
    // two concurrent sends of one new id: one run, both answered
    const [first, second] = await Promise.all([core.submit(add(b, 'op-b2')), core.submit(add(b, 'op-b2'))]);
    expect(first).toEqual(second);
    const markers = shared.committed.filter((t) =>
      t.ops.some((o) => o.type === 'put' && o.key.endsWith('op/unfinished')),
    );
    expect(markers).toHaveLength(3 + 1);
  });

  it('counts an add of a member and a remove of a non-member as done', async () => {
    const { nodes, core } = await cluster([{ active: range(VBS) }, {}]);
    const [a, c] = nodes as [StorageNode, StorageNode];
    await core.submit(add(a, 'op-a'));
    expect(await core.submit(add(a, 'op-a-again'))).toEqual({ opId: 'op-a-again', outcome: 'done' });
    expect(await core.submit(remove(c, 'op-rc'))).toEqual({ opId: 'op-rc', outcome: 'done' });
  });

  it('refuses a node whose vBucket count differs from the cluster', async () => {
    const { nodes, core } = await cluster([{ active: range(VBS) }]);
    await core.submit(add(nodes[0] as StorageNode, 'op-a'));
    const [other] = await startNodes(VBS * 2, [{}]);
    cleanups.push(() => other!.stop());
    const refusal = (await core.submit(add(other!, 'op-x')).catch((e: unknown) => e)) as ClusterCallError;
    expect(refusal.errorClass).toBe('permanent');
    expect(refusal.message).toMatch(/has 16 vBuckets, the cluster 8/);
  });

  it('refuses an unreachable node permanently and writes nothing', async () => {
    const { core, shared } = await cluster([]);
    const writes = shared.committed.length;
    const refusal = (await core
      .submit({ opId: 'op-x', kind: 'add-node', node: '127.0.0.1:1' })
      .catch((e: unknown) => e)) as ClusterCallError;
    expect(refusal.errorClass).toBe('permanent');
    expect(refusal.message).toMatch(/unreachable/);
    expect(shared.committed.length).toBe(writes);
  });

  it('answers not-applied on a follower and names the leader', async () => {
    const { shared } = await cluster([]);
    const follower = await startManager('m2', shared.client());
    cleanups.push(() => follower.handle.close());
    follower.clock.advance(5_000);
    await new Promise((r) => setTimeout(r, 10));
    expect(follower.handle.core.role()).toMatchObject({ leader: false, leaderName: 'm1' });
    const refusal = (await follower.handle.core
      .submit({ opId: 'x', kind: 'add-node', node: '127.0.0.1:1' })
      .catch((e: unknown) => e)) as ClusterCallError;
    expect(refusal.errorClass).toBe('not-applied');
    expect(refusal.message).toMatch(/m2 is not the leader \(leader: m1\)/);
  });
});

describe('fencing', () => {
  it('a leader whose leader key ended without its knowledge writes nothing and steps down', async () => {
    const { nodes, shared, manager } = await cluster([{ active: range(VBS) }]);
    const oldEpoch = await manager.leading;
    // the server ends m1's leadership (its lease expired while it was paused) and m2 takes over
    const leaderKey = [...shared.kvs.values()].find((kv) => kv.createRevision === oldEpoch)!;
    await shared.txn([], [{ type: 'delete', key: leaderKey.key }]);
    const m2 = await startManager('m2', shared.client());
    cleanups.push(() => m2.handle.close());
    const newEpoch = await m2.leading;
    expect(newEpoch).toBeGreaterThan(oldEpoch);
    const writes = shared.committed.length;
    const refusal = (await manager.handle.core
      .submit(add(nodes[0] as StorageNode, 'op-a'))
      .catch((e: unknown) => e)) as ClusterCallError;
    // fenced at its first (marker) write: nothing of the operation was written
    expect(refusal.errorClass).toBe('not-applied');
    expect(shared.committed.length).toBe(writes);
    expect(manager.handle.core.role().leader).toBe(false);
    await vi.waitFor(() => expect(manager.roles.at(-1)).toEqual({ leader: false }));
    // the new leader runs it
    expect(await m2.handle.core.submit(add(nodes[0] as StorageNode, 'op-a'))).toMatchObject({
      outcome: 'done',
    });
  });
});
