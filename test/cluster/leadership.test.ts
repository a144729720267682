import { afterEach, describe, expect, it, vi } from 'vitest';
import { ELECTION } from '../../src/cluster/index.js';
import { noAuth } from '../../src/node/auth.js';
import { StorageNode } from '../../src/node/node.js';
import { VBucketState } from '../../src/protocol/index.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import { addressOf, range, startManager, startNodes, statesOf } from './fixture.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function leaseOfLeader(shared: MemoryMetadata) {
  const key = shared.kvs.get(ELECTION);
  return key?.lease === undefined ? undefined : shared.leases.get(key.lease);
}

describe('leadership', () => {
  it('steps down when its own lease deadline passes, then campaigns again with a fresh lease and a new epoch', async () => {
    const shared = new MemoryMetadata();
    const m = await startManager('m1', shared.client());
    cleanups.push(() => m.handle.close());
    const first = await m.leading;
    expect(m.roles).toEqual([{ leader: false }, { leader: true, epoch: first }]);
    leaseOfLeader(shared)!.deadlineAt = 1_000;
    m.clock.advance(1_000);
    await vi.waitFor(() => expect(m.roles.length).toBe(4));
    expect(m.roles[2]).toEqual({ leader: false });
    const again = m.roles[3] as { leader: true; epoch: number };
    expect(again.leader).toBe(true);
    expect(again.epoch).toBeGreaterThan(first);
    expect(m.handle.core.role()).toMatchObject({ leader: true, epoch: again.epoch, leaderName: 'm1' });
  });

  it('hands over to the other manager when the leader’s lease is lost, and the old one follows', async () => {
    const shared = new MemoryMetadata();
    const m1 = await startManager('m1', shared.client());
    cleanups.push(() => m1.handle.close());
    const e1 = await m1.leading;
    const m2 = await startManager('m2', shared.client());
    cleanups.push(() => m2.handle.close());
    expect(m2.roles).toEqual([{ leader: false }]);
    shared.expire(leaseOfLeader(shared)!.id);
    const e2 = await m2.leading;
    expect(e2).toBeGreaterThan(e1);
    await vi.waitFor(() => expect(m1.roles.at(-1)).toEqual({ leader: false }));
    m1.clock.advance(5_000);
    await vi.waitFor(() =>
      expect(m1.handle.core.role()).toMatchObject({ leader: false, leaderName: 'm2', epoch: e2 }),
    );
    const status = await m1.handle.core.status();
    expect(status).toMatchObject({ leader: 'm2', epoch: e2 });
  });

  it('publishes leader, epoch, operations and janitor repairs as metrics', async () => {
    const shared = new MemoryMetadata();
    const [a] = await startNodes(4, [{ active: range(4) }]);
    cleanups.push(() => a!.stop());
    const m = await startManager('m1', shared.client());
    cleanups.push(() => m.handle.close());
    const epoch = await m.leading;
    await m.handle.core.submit({ opId: 'x', kind: 'add-node', node: addressOf(a!) });
    await m.handle.core
      .submit({ opId: 'y', kind: 'remove-node', node: addressOf(a!) })
      .catch(() => undefined);
    await a!.store.vbucket(1).setState(VBucketState.Replica);
    await m.interval();
    const text = await m.handle.metrics.registry.metrics();
    expect(text).toContain('dcpx_manager_leader 1');
    expect(text).toContain(`dcpx_manager_epoch ${epoch}`);
    expect(text).toContain('dcpx_manager_operations_total{kind="add-node",result="done"} 1');
    expect(text).toContain('dcpx_manager_operations_total{kind="remove-node",result="permanent"} 1');
    expect(text).toContain('dcpx_manager_janitor_repairs_total{kind="state"} 1');
    expect(text).toMatch(/dcpx_manager_janitor_runs_total\{result="repaired"\} 1/);
    expect(statesOf(a!)).toEqual(['active', 'active', 'active', 'active']);
  });
});

describe('the janitor', () => {
  async function threeNodes() {
    const nodes = await startNodes(4, [{ active: range(4) }, { replica: range(4) }, {}]);
    cleanups.push(() => Promise.all(nodes.map((n) => n.stop().catch(() => undefined))));
    const shared = new MemoryMetadata();
    const m = await startManager('m1', shared.client());
    cleanups.push(() => m.handle.close());
    await m.leading;
    for (const [i, n] of nodes.entries()) {
      await m.handle.core.submit({ opId: `add-${i}`, kind: 'add-node', node: addressOf(n) });
    }
    await m.handle.settled();
    return { nodes: nodes as [StorageNode, StorageNode, StorageNode], m };
  }

  it('adopts a finished takeover into the map (one active, elsewhere: derive)', async () => {
    const { nodes, m } = await threeNodes();
    const [a, b] = nodes;
    await a.store.vbucket(0).setState(VBucketState.Dead);
    await b.store.vbucket(0).setState(VBucketState.Active);
    const report = await m.handle.runJanitor();
    expect(report.fixes).toEqual([
      { vb: 0, rule: 'derive', from: [addressOf(a), addressOf(b)], to: [addressOf(b), null] },
    ]);
    expect((await m.handle.core.status()).map[0]).toEqual([addressOf(b), null]);
  });

  it('changes no chain while a member does not answer, and does so once it answers again', async () => {
    const { nodes, m } = await threeNodes();
    const [a, b, c] = nodes;
    const port = c.address.port;
    const cAddress = addressOf(c);
    await c.stop();
    await a.store.vbucket(0).setState(VBucketState.Dead);
    await b.store.vbucket(0).setState(VBucketState.Active);
    const report = await m.handle.runJanitor();
    expect(report.unreachable).toEqual([cAddress]);
    expect(report.waiting).toEqual([0]);
    expect(report.fixes).toEqual([]);
    expect((await m.handle.core.status()).map[0]).toEqual([addressOf(a), addressOf(b)]);
    expect(statesOf(b)[0]).toBe('active');
    const again = await StorageNode.start({ port, vbuckets: 4, auth: noAuth });
    cleanups.push(() => again.stop());
    const next = await m.handle.runJanitor();
    expect(next.unreachable).toEqual([]);
    expect(next.fixes.map((f) => f.vb)).toEqual([0]);
  });

  it('refuses to act on several actives when the map owner is not among them, and reports them', async () => {
    const { nodes, m } = await threeNodes();
    const [a, b, c] = nodes;
    await a.store.vbucket(0).setState(VBucketState.Dead);
    await b.store.vbucket(0).setState(VBucketState.Active);
    await c.store.vbucket(0).setState(VBucketState.Active);
    await a.store.vbucket(1).setState(VBucketState.Replica);
    const report = await m.handle.runJanitor();
    expect(report.refused).toEqual([{ vb: 0, actives: [addressOf(b), addressOf(c)].sort() }]);
    expect(report.statesSet).toBe(0);
    // nothing applied anywhere, as ns_server: vb 1 waits too
    expect(statesOf(a).slice(0, 2)).toEqual(['dead', 'replica']);
    expect(
      await m.handle.metrics.registry.getSingleMetricAsString('dcpx_manager_janitor_repairs_total'),
    ).toContain('kind="refused-several-actives"} 1');
  });
});

describe('fencing on the nodes', () => {
  it('a node refuses the old leader after the new one reached it, and the old one steps down', async () => {
    const shared = new MemoryMetadata();
    const [a, b] = await startNodes(4, [{ active: range(4) }, { replica: range(4) }]);
    cleanups.push(() => Promise.all([a!.stop(), b!.stop()]));
    const m1 = await startManager('m1', shared.client());
    cleanups.push(() => m1.handle.close());
    const e1 = await m1.leading;
    await m1.handle.core.submit({ opId: 'add-a', kind: 'add-node', node: addressOf(a!) });
    await m1.handle.core.submit({ opId: 'add-b', kind: 'add-node', node: addressOf(b!) });
    await m1.handle.settled();
    expect(a!.fence.epoch).toBe(BigInt(e1));
    // m1 is paused past its lease: the store ends its leadership without m1 hearing of it
    await shared.txn([], [{ type: 'delete', key: ELECTION }]);
    const m2 = await startManager('m2', shared.client());
    cleanups.push(() => m2.handle.close());
    const e2 = await m2.leading;
    await m2.handle.settled();
    expect(a!.fence.epoch).toBe(BigInt(e2));
    expect(b!.fence.epoch).toBe(BigInt(e2));
    // m1 resumes and, still believing it leads, tries to fix a state on a node
    await a!.store.vbucket(1).setState(VBucketState.Replica);
    const writes = shared.committed.length;
    const outcome = (await m1.handle.runJanitor().catch((e: unknown) => e)) as { errorClass?: string };
    expect(outcome.errorClass).toBe('fenced');
    expect(statesOf(a!)[1]).toBe('replica');
    expect(shared.committed.length).toBe(writes);
    await vi.waitFor(() => expect(m1.roles.at(-1)).toEqual({ leader: false }));
  });
});
