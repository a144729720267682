import { afterEach, describe, expect, it, vi } from 'vitest';
import { decode, encode, keys, readResult, type VBucketMap } from '../../src/cluster/layout.js';
import { replicationTopology } from '../../src/cluster/plan/replication-topology.js';
import { planMap } from '../../src/cluster/plan/vbucket-map.js';
import { ProgressTracker } from '../../src/cluster/rebalance/progress.js';
import { REBALANCE_STEPS } from '../../src/cluster/steps.js';
import {
  ClusterCallError,
  type NodeState,
  type OperationResult,
  type TopologyOperationRequest,
} from '../../src/cluster/types.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { MemoryMetadata } from '../helpers/memory-metadata.js';
import {
  FakeCluster,
  type FakeEvent,
  type FakeManager,
  fakeConvergence,
  seedCluster,
  startFakeManager,
} from './fake-nodes.js';

const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const VBS = 8;
const A = '10.0.0.1:11210';
const B = '10.0.0.2:11210';
const C = '10.0.0.3:11210';
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

interface Setup {
  readonly shared: MemoryMetadata;
  readonly cluster: FakeCluster;
  readonly manager: FakeManager & { readonly client: { close(): Promise<void> } };
  readonly initial: VBucketMap;
}

/** A, B active with a map over them; C added (unplaced), unless `states` says otherwise. */
async function setup(
  options: {
    states?: Record<string, NodeState>;
    mapNodes?: string[];
    movesPerNode?: number;
    crashAt?: string;
  } = {},
): Promise<Setup> {
  const shared = new MemoryMetadata();
  const cluster = new FakeCluster([A, B, C], VBS);
  shared.onChange((event) => {
    cluster.events.push({
      op: 'store',
      key: event.kv.key,
      value: event.type === 'put' ? decode(event.kv.value) : undefined,
    });
  });
  const initial = planMap({
    nodes: (options.mapNodes ?? [A, B]).map((address) => ({ address })),
    vbuckets: VBS,
    replicas: 1,
  });
  cluster.place(initial);
  const seeder = shared.client();
  await seedCluster(seeder, options.states ?? { [A]: 'active', [B]: 'active', [C]: 'added' }, initial, {
    movesPerNode: options.movesPerNode ?? 4,
  });
  const manager = await startManager(shared, cluster, 'm1', options.crashAt);
  return { shared, cluster, manager, initial };
}

async function startManager(shared: MemoryMetadata, cluster: FakeCluster, name: string, crashAt?: string) {
  const client = shared.client();
  const manager = await startFakeManager(name, client, cluster, crashAt !== undefined ? { crashAt } : {});
  cleanups.push(async () => {
    await manager.handle.close();
    await client.close();
  });
  await manager.leading;
  await manager.handle.settled();
  return Object.assign(manager, { client });
}

function waitForResult(shared: MemoryMetadata, opId: string): Promise<OperationResult> {
  const store = shared.client();
  return vi.waitFor(
    async () => {
      const result = await readResult(store, opId);
      if (!result) throw new Error(`no result for ${opId} yet`);
      return result;
    },
    { timeout: 10_000, interval: 5 },
  );
}

function storedTarget(cluster: FakeCluster): VBucketMap {
  const put = cluster.events.find(
    (e) => e.op === 'store' && e.key === keys.targetMap && e.value !== undefined,
  );
  if (put?.op !== 'store') throw new Error('no target map stored');
  return (put.value as { map: VBucketMap }).map;
}

const rebalance = (opId: string): TopologyOperationRequest => ({ opId, kind: 'rebalance' });

function indexOf(events: readonly FakeEvent[], from: number, match: (e: FakeEvent) => boolean): number {
  for (let i = from; i < events.length; i++) if (match(events[i] as FakeEvent)) return i;
  return -1;
}

describe('rebalance with fake nodes', () => {
  it('moves each vBucket by copy, catch-up, takeover, map update, re-point and delete, in that order', async () => {
    const { shared, cluster, manager } = await setup();
    const core = manager.handle.core;
    const eventsBefore = cluster.events.length;
    expect(await core.submit(rebalance('rb'))).toMatchObject({ opId: 'rb', outcome: 'started' });
    expect(await waitForResult(shared, 'rb')).toMatchObject({ outcome: 'done' });
    await manager.handle.settled();

    // the target map went in with the marker, in one txn, before any node was touched
    const targetTxn = shared.committed.findIndex((t) =>
      t.ops.some((o) => o.type === 'put' && o.key === keys.targetMap),
    );
    expect(
      shared.committed[targetTxn]?.ops.map((o) => (o.type === 'deletePrefix' ? o.prefix : o.key)),
    ).toContain(keys.marker);
    const events = cluster.events;
    const targetAt = indexOf(events, eventsBefore, (e) => e.op === 'store' && e.key === keys.targetMap);
    const firstNodeChange = indexOf(events, eventsBefore, (e) => e.op === 'state' || e.op === 'takeover');
    expect(targetAt).toBeGreaterThan(-1);
    expect(targetAt).toBeLessThan(firstNodeChange);

    const target = storedTarget(cluster);
    const status = await core.status();
    expect(status.map).toEqual(target.chains);
    expect(fakeConvergence(status, cluster)).toEqual([]);
    expect(status.nodes.find((n) => n.address === C)?.state).toBe('active');
    expect(cluster.doubleActives.size).toBe(0);

    // every vBucket whose head moved to the new node went through the steps in order
    const moved = range(VBS).filter((vb) => target.chains[vb]?.[0] === C);
    expect(moved.length).toBeGreaterThan(0);
    for (const vb of moved) {
      const initial = await initialChain(shared, vb);
      const oldHead = initial[0] as string;
      const to = target.chains[vb] as string[];
      const copy = indexOf(
        events,
        targetAt,
        (e) => e.op === 'state' && e.node === C && e.vb === vb && e.state === 'replica',
      );
      const streaming = indexOf(
        events,
        copy,
        (e) => e.op === 'replication' && e.node === C && (e.topology[oldHead] ?? []).includes(vb),
      );
      const takeover = indexOf(events, streaming, (e) => e.op === 'takeover' && e.node === C && e.vb === vb);
      const mapped = indexOf(
        events,
        takeover,
        (e) =>
          e.op === 'store' &&
          e.key === keys.map &&
          JSON.stringify((e.value as VBucketMap).chains[vb]) === JSON.stringify(to),
      );
      const replicaOfNew = to[1];
      const repointed = indexOf(
        events,
        mapped,
        (e) => e.op === 'replication' && e.node === replicaOfNew && (e.topology[C] ?? []).includes(vb),
      );
      expect(copy).toBeGreaterThan(targetAt);
      expect(streaming).toBeGreaterThan(copy);
      expect(takeover).toBeGreaterThan(streaming);
      expect(mapped).toBeGreaterThan(takeover);
      expect(repointed).toBeGreaterThan(mapped);
      for (const old of initial.filter((n) => n !== null && !to.includes(n))) {
        const deleted = indexOf(events, repointed, (e) => e.op === 'delete' && e.node === old && e.vb === vb);
        expect(deleted).toBeGreaterThan(repointed);
      }
    }
  });

  it('writes a move to the map only while the stored chain is still the old one', async () => {
    const { shared, cluster, manager } = await setup();
    const c = cluster.node(C);
    for (const vb of range(VBS)) c.stalled.add(vb);
    await manager.handle.core.submit(rebalance('rb'));
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'state' && e.node === C)).toBe(true));
    const target = storedTarget(cluster);
    const vb = range(VBS).find((v) =>
      cluster.events.some((e) => e.op === 'state' && e.node === C && e.vb === v),
    )!;
    // someone else changes that chain under the rebalance
    const store = shared.client();
    const map = decode<VBucketMap>((await store.get(keys.map))!.value);
    const theirs = [...(map.chains[vb] as string[])].reverse();
    await store.txn(
      [],
      [
        {
          type: 'put',
          key: keys.map,
          value: encode({ ...map, chains: map.chains.map((ch, v) => (v === vb ? theirs : ch)) }),
        },
      ],
    );
    const changedAt = cluster.events.length;
    c.stalled.clear();
    const result = await waitForResult(shared, 'rb');
    expect(result.outcome).toBe('refused');
    expect(result.reason).toMatch(new RegExp(`vb ${vb}'s chain changed under the rebalance`));
    // the rebalance never wrote its chain over the other writer's
    const overwritten = cluster.events
      .slice(changedAt)
      .some(
        (e) =>
          e.op === 'store' &&
          e.key === keys.map &&
          JSON.stringify((e.value as VBucketMap).chains[vb]) === JSON.stringify(target.chains[vb]),
      );
    expect(overwritten).toBe(false);
    // and the janitor then makes the map match what the nodes hold
    await manager.handle.settled();
    await manager.handle.runJanitor();
    expect(fakeConvergence(await manager.handle.core.status(), cluster)).toEqual([]);
  });

  it('stop-rebalance abandons the moves before their takeover and leaves a cluster the janitor finds clean', async () => {
    const { shared, cluster, manager } = await setup();
    const core = manager.handle.core;
    const c = cluster.node(C);
    for (const vb of range(VBS)) c.stalled.add(vb);
    await core.submit(rebalance('rb'));
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'state' && e.node === C)).toBe(true));
    expect((await core.status()).rebalance).toMatchObject({ opId: 'rb', done: 0 });

    const stop = await core.submit({ opId: 'stop', kind: 'stop-rebalance' });
    expect(stop).toEqual({ opId: 'stop', outcome: 'done', detail: { stopped: 'rb' } });
    expect(await readResult(shared.client(), 'rb')).toMatchObject({
      outcome: 'refused',
      reason: 'stopped: stop-rebalance stop',
    });
    const status = await core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(status.rebalance).toBeNull();
    // the copies it had started are gone; nothing for the janitor to do
    expect(c.vbs.every((v) => v === undefined)).toBe(true);
    await manager.handle.settled();
    const report = await manager.handle.runJanitor();
    expect(report).toMatchObject({ repaired: null, fixes: [], refused: [], statesSet: 0 });
    expect(report.skipped).toBeUndefined();
    expect(fakeConvergence(await core.status(), cluster)).toEqual([]);
    // stopping again: nothing runs
    expect(await core.submit({ opId: 'stop2', kind: 'stop-rebalance' })).toMatchObject({
      detail: { stopped: null },
    });
  });

  it('stop-rebalance returns at the 10 s bound even while a takeover hangs, and the janitor then converges', async () => {
    const { shared, cluster, manager } = await setup();
    const core = manager.handle.core;
    cluster.node(C).hangTakeovers = true;
    await core.submit(rebalance('rb'));
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'takeover')).toBe(true));
    let answered = false;
    const stop = core.submit({ opId: 'stop', kind: 'stop-rebalance' }).then((r) => {
      answered = true;
      return r;
    });
    await new Promise((r) => setTimeout(r, 30));
    expect(answered).toBe(false);
    manager.clock.advance(8_000);
    expect(await stop).toMatchObject({ outcome: 'done', detail: { stopped: 'rb' } });
    expect(answered).toBe(true);
    expect((await readResult(shared.client(), 'rb'))?.outcome).toBe('refused');
    // the hung takeover finishes later; the janitor adopts whatever the nodes settled on
    cluster.node(C).releaseTakeovers();
    await vi.waitFor(() => expect(manager.handle.metrics.rebalanceProgress()).toBeNull());
    await manager.handle.settled();
    await manager.handle.runJanitor();
    await manager.handle.runJanitor();
    expect(fakeConvergence(await core.status(), cluster)).toEqual([]);
    expect(cluster.doubleActives.size).toBe(0);
  });

  it('starts the next backfill as soon as a move caught up, while that move is still in its takeover', async () => {
    const { shared, cluster, manager } = await setup({ movesPerNode: 1 });
    cluster.node(C).hangTakeovers = true;
    await manager.handle.core.submit(rebalance('rb'));
    // one backfill at a time onto C: the first move waits in its takeover, its backfill slot is free
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'takeover')).toBe(true));
    const hung = indexOf(cluster.events, 0, (e) => e.op === 'takeover');
    await vi.waitFor(() =>
      expect(
        indexOf(cluster.events, hung, (e) => e.op === 'state' && e.node === C && e.state === 'replica'),
      ).toBeGreaterThan(hung),
    );
    cluster.node(C).releaseTakeovers();
    expect(await waitForResult(shared, 'rb')).toMatchObject({ outcome: 'done' });
    await manager.handle.settled();
    expect(fakeConvergence(await manager.handle.core.status(), cluster)).toEqual([]);
  });

  it('a later rebalance redoes none of the moves the stopped one finished', async () => {
    const { shared, cluster, manager } = await setup({ movesPerNode: 64 });
    const core = manager.handle.core;
    await core.submit(rebalance('rb1'));
    const target = storedTarget(cluster);
    // hold back one move (the first whose head goes to C), let the others finish
    const held = range(VBS).find((vb) => target.chains[vb]?.[0] === C)!;
    cluster.node(C).stalled.add(held);
    await vi.waitFor(() => {
      const p = core.status();
      return p.then((s) => expect(s.rebalance?.done).toBe((s.rebalance?.total ?? 0) - 1));
    });
    await core.submit({ opId: 'stop', kind: 'stop-rebalance' });
    const first = await readResult(shared.client(), 'rb1');
    expect(first?.outcome).toBe('refused');
    const stoppedAt = cluster.events.length;

    cluster.node(C).stalled.clear();
    await manager.handle.settled();
    await core.submit(rebalance('rb2'));
    expect(await waitForResult(shared, 'rb2')).toMatchObject({ outcome: 'done', detail: { total: 1 } });
    const touched = new Set(
      cluster.events
        .slice(stoppedAt)
        .filter((e) => e.op === 'takeover' || (e.op === 'state' && e.state === 'replica'))
        .map((e) => (e as { vb: number }).vb),
    );
    expect([...touched]).toEqual([held]);
    await manager.handle.settled();
    expect(fakeConvergence(await core.status(), cluster)).toEqual([]);
  });

  it('reports a move with no seqno progress for 60 s as stuck, on the injected clock', async () => {
    const { shared, cluster, manager } = await setup();
    const core = manager.handle.core;
    const c = cluster.node(C);
    for (const vb of range(VBS)) c.stalled.add(vb);
    await core.submit(rebalance('rb'));
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'state' && e.node === C)).toBe(true));
    // the moves that build no copy on C finish; those that do wait for C
    const withC = range(VBS).filter((vb) => storedTarget(cluster).chains[vb]?.includes(C));
    await vi.waitFor(async () => {
      const p = (await core.status()).rebalance;
      expect(p?.done).toBe((p?.total ?? 0) - withC.length);
    });
    manager.clock.advance(59_000);
    expect((await core.status()).rebalance).toMatchObject({ stuck: false, stuckMoves: [] });
    manager.clock.advance(1_000);
    const status = await core.status();
    expect(status.rebalance?.stuck).toBe(true);
    const stalledMoves = range(VBS).filter((vb) =>
      cluster.events.some((e) => e.op === 'state' && e.node === C && e.vb === vb),
    );
    expect(status.rebalance?.stuckMoves).toEqual(stalledMoves);
    const metric = await manager.handle.metrics.registry.getSingleMetricAsString(
      'dcpx_manager_rebalance_stuck_moves',
    );
    expect(metric).toContain(`dcpx_manager_rebalance_stuck_moves ${stalledMoves.length}`);
    // progress resumes: no longer stuck, and it finishes
    c.step = 1n;
    c.stalled.clear();
    await vi.waitFor(async () => expect((await core.status()).rebalance?.stuck ?? false).toBe(false));
    c.step = undefined;
    expect(await waitForResult(shared, 'rb')).toMatchObject({ outcome: 'done' });
  });

  it('retries a failed takeover in a later round, and ends refused when it keeps failing', async () => {
    const ok = await setup();
    for (const vb of range(VBS)) ok.cluster.node(C).takeoverFailures.set(vb, 1);
    await ok.manager.handle.core.submit(rebalance('rb'));
    const result = await waitForResult(ok.shared, 'rb');
    expect(result.outcome).toBe('done');
    expect(Number(result.detail?.retried)).toBeGreaterThan(0);
    await ok.manager.handle.settled();
    expect(fakeConvergence(await ok.manager.handle.core.status(), ok.cluster)).toEqual([]);

    const bad = await setup();
    for (const vb of range(VBS)) bad.cluster.node(C).takeoverFailures.set(vb, 99);
    await bad.manager.handle.core.submit(rebalance('rb'));
    const refused = await waitForResult(bad.shared, 'rb');
    expect(refused.outcome).toBe('refused');
    expect(refused.reason).toMatch(/did not finish after 3 rounds; last failure: .*takeover of vb \d+ by/);
    await bad.manager.handle.settled();
    const status = await bad.manager.handle.core.status();
    expect(status.unfinishedOperation).toBeNull();
    expect(fakeConvergence(status, bad.cluster)).toEqual([]);
    expect(bad.cluster.doubleActives.size).toBe(0);
  });

  it('answers a resend of the running rebalance started, and refuses other operations until it ends', async () => {
    const { cluster, manager } = await setup();
    const core = manager.handle.core;
    for (const vb of range(VBS)) cluster.node(C).stalled.add(vb);
    await core.submit(rebalance('rb'));
    expect(await core.submit(rebalance('rb'))).toEqual({ opId: 'rb', outcome: 'started' });
    for (const request of [rebalance('rb-other'), { opId: 'add', kind: 'add-node' as const, node: C }]) {
      const refusal = (await core.submit(request).catch((e: unknown) => e)) as ClusterCallError;
      expect(refusal).toBeInstanceOf(ClusterCallError);
      expect(refusal.errorClass).toBe('permanent');
      expect(refusal.message).toMatch(/rebalance rb is running/);
    }
    // janitor rounds pause meanwhile: the rebalancer owns the topology
    expect((await manager.handle.runJanitor()).skipped).toBe('rebalance-running');
    await core.submit({ opId: 'stop', kind: 'stop-rebalance' });
  });

  it('removes a node of an initialised cluster by a rebalance without it', async () => {
    const { shared, cluster, manager } = await setup({
      states: { [A]: 'active', [B]: 'active', [C]: 'active' },
      mapNodes: [A, B, C],
    });
    const core = manager.handle.core;
    expect(await core.submit({ opId: 'rm', kind: 'remove-node', node: C })).toMatchObject({
      outcome: 'started',
    });
    expect((await core.status()).nodes.find((n) => n.address === C)?.state).toBe('leaving');
    expect(await waitForResult(shared, 'rm')).toMatchObject({ outcome: 'done', detail: { ejected: C } });
    await manager.handle.settled();
    const status = await core.status();
    expect(status.nodes.map((n) => n.address)).toEqual([A, B]);
    expect(status.map.every((chain) => !chain.includes(C) && chain.length === 2)).toBe(true);
    expect(fakeConvergence(status, cluster)).toEqual([]);
    expect(cluster.node(C).vbs.every((v) => v === undefined || v.state === 'dead')).toBe(true);
    expect(cluster.node(C).topology).toEqual({});
  });
});

describe('janitor and the replication topology', () => {
  it('pushes every member its topology each round; a reachable failed node only loses its actives and streams', async () => {
    const { cluster, manager, initial } = await setup({
      states: { [A]: 'active', [B]: 'active', [C]: 'failed' },
    });
    // the failed node still thinks it owns vb 0
    cluster.node(C).vbs[0] = { state: 'active', seqno: 3n };
    cluster.node(C).topology = { [A]: [1] };
    cluster.node(A).topology = {};
    const report = await manager.handle.runJanitor();
    expect(report.unreachable).toEqual([]);
    const expected = replicationTopology(initial, [], [A, B]);
    expect(cluster.node(A).topology).toEqual(expected.get(A));
    expect(cluster.node(B).topology).toEqual(expected.get(B));
    expect(cluster.node(C).vbs[0]?.state).toBe('dead');
    expect(cluster.node(C).topology).toEqual({});
    expect(fakeConvergence(await manager.handle.core.status(), cluster)).toEqual([]);
    // a node forgets its topology (restart): the next round gives it again
    cluster.node(B).topology = {};
    await manager.handle.runJanitor();
    expect(cluster.node(B).topology).toEqual(expected.get(B));
  });

  it('fixes chains while a failed node is unreachable', async () => {
    const { cluster, manager } = await setup({ states: { [A]: 'active', [B]: 'active', [C]: 'failed' } });
    cluster.node(C).reachable = false;
    const vb = 0;
    const chain = (await manager.handle.core.status()).map[vb] as string[];
    // a takeover finished on the nodes, the map was not updated
    cluster.node(chain[0] as string).vbs[vb]!.state = 'dead';
    cluster.node(chain[1] as string).vbs[vb]!.state = 'active';
    const report = await manager.handle.runJanitor();
    expect(report.unreachable).toEqual([]);
    expect(report.fixes.map((f) => f.vb)).toEqual([vb]);
    expect((await manager.handle.core.status()).map[vb]?.[0]).toBe(chain[1]);
  });
});

describe('a manager crash at every rebalance step', () => {
  for (const step of REBALANCE_STEPS) {
    it(`the next leader converges after a crash at ${step}`, async () => {
      const stopping = step.startsWith('stop-rebalance');
      const { shared, cluster, manager } = await setup({ crashAt: step });
      const core = manager.handle.core;
      if (stopping) cluster.node(C).stalled.add(0);
      const started = await core.submit(rebalance('rb')).catch((e: unknown) => e);
      if (step === 'rebalance:after-marker') expect(started).toMatchObject({ errorClass: 'maybe-applied' });
      if (stopping) {
        await vi.waitFor(() =>
          expect(cluster.events.some((e) => e.op === 'state' && e.node === C)).toBe(true),
        );
        await core.submit({ opId: 'stop', kind: 'stop-rebalance' }).catch(() => undefined);
      }
      expect(await manager.handle.crashed).toBe(step);
      await manager.handle.close();
      await manager.client.close();
      cluster.node(C).stalled.clear();

      const next = await startManager(shared, cluster, 'm2');
      const result = await waitForResult(shared, 'rb');
      expect(result.outcome).toBe(stopping ? 'refused' : 'done');
      await vi.waitFor(() => expect(next.handle.metrics.rebalanceProgress()).toBeNull());
      await next.handle.settled();
      await next.handle.runJanitor();
      const status = await next.handle.core.status();
      expect(status.leader).toBe('m2');
      expect(status.unfinishedOperation).toBeNull();
      expect(fakeConvergence(status, cluster)).toEqual([]);
      expect(cluster.doubleActives.size).toBe(0);
      expect(status.nodes.find((n) => n.address === C)?.state).toBe(stopping ? 'added' : 'active');
      if (!stopping) expect(status.map).toEqual(storedTarget(cluster).chains);
    });
  }
});

async function initialChain(shared: MemoryMetadata, vb: number): Promise<(string | null)[]> {
  // the first stored map (the seed) holds the chains before the rebalance
  const first = shared.committed.find((t) => t.ops.some((o) => o.type === 'put' && o.key === keys.map));
  const op = first?.ops.find((o) => o.type === 'put' && o.key === keys.map);
  if (op?.type !== 'put') throw new Error('no seeded map');
  return [...(decode<VBucketMap>(op.value).chains[vb] ?? [null])];
}

describe('rebalance progress', () => {
  it('counts moves per node and overall, estimates the time left from the rate so far, and flags stuck moves', () => {
    const clock = new ManualClock();
    const tracker = new ProgressTracker('rb', 4, 0, clock, 60_000);
    const moves = [
      { vb: 0, from: [A, B], to: [C, B] },
      { vb: 1, from: [A, B], to: [A, C] },
      { vb: 2, from: [B, A], to: [B, C] },
      { vb: 3, from: [B, A], to: [C, A] },
    ];
    tracker.plan(moves);
    expect(tracker.snapshot()).toMatchObject({ done: 0, total: 4, etaS: null, stuck: false });
    for (const m of moves) tracker.started(m.vb);
    clock.advance(10_000);
    tracker.finished(moves[0]!);
    expect(tracker.snapshot()).toMatchObject({
      done: 1,
      etaS: 30,
      nodes: { [A]: { done: 1, total: 4 }, [B]: { done: 1, total: 4 }, [C]: { done: 1, total: 4 } },
    });
    tracker.progressed(1);
    clock.advance(50_000);
    // vb 1 grew 50 s ago, vbs 2 and 3 never since they started 60 s ago
    expect(tracker.snapshot()).toMatchObject({ stuck: true, stuckMoves: [2, 3] });
    tracker.ended(2);
    tracker.finished(moves[3]!);
    expect(tracker.snapshot().stuckMoves).toEqual([]);
  });
});

describe('leadership ending under a rebalance', () => {
  it('halts the rebalance at once: its epoch writes nothing more, and the next leadership resumes it', async () => {
    const { shared, cluster, manager } = await setup();
    const oldEpoch = await manager.leading;
    const c = cluster.node(C);
    for (const vb of range(VBS)) c.stalled.add(vb);
    await manager.handle.core.submit(rebalance('rb'));
    await vi.waitFor(() => expect(cluster.events.some((e) => e.op === 'state' && e.node === C)).toBe(true));
    // the store ends the leadership (its lease expired while the process was paused)
    const writes = shared.committed.length;
    const commands = cluster.events.length;
    for (const id of [...shared.leases.keys()]) shared.expire(id);
    c.stalled.clear();
    // the process campaigns again and leads with a new epoch, whose janitor resumes the rebalance
    expect(await waitForResult(shared, 'rb')).toMatchObject({ outcome: 'done' });
    const byOldEpoch = shared.committed
      .slice(writes)
      .filter((t) => t.compares.some((cmp) => cmp.target === 'createRevision' && cmp.revision === oldEpoch));
    expect(byOldEpoch).toEqual([]);
    // nor does any node get a command of the old epoch
    const oldCommands = cluster.events
      .slice(commands)
      .filter((e) => e.op !== 'store' && e.epoch === oldEpoch);
    expect(oldCommands).toEqual([]);
    expect(manager.handle.core.role().epoch).toBeGreaterThan(oldEpoch);
    await manager.handle.settled();
    expect(fakeConvergence(await manager.handle.core.status(), cluster)).toEqual([]);
  });
});

describe('a rebalance resumed by a new leader', () => {
  it('answers a resend of its op id started and refuses other operations while it runs', async () => {
    const { shared, cluster, manager } = await setup({ crashAt: 'rebalance:after-copies' });
    const c = cluster.node(C);
    for (const vb of range(VBS)) c.stalled.add(vb);
    await manager.handle.core.submit(rebalance('rb'));
    await manager.handle.crashed;
    await manager.handle.close();
    await manager.client.close();

    const next = await startManager(shared, cluster, 'm2');
    // its first janitor round resumed the rebalance toward the stored target
    expect(next.handle.metrics.rebalanceProgress()).toMatchObject({ opId: 'rb' });
    expect(await next.handle.core.submit(rebalance('rb'))).toEqual({ opId: 'rb', outcome: 'started' });
    const refusal = (await next.handle.core
      .submit({ opId: 'add', kind: 'add-node', node: '10.0.0.9:11210' })
      .catch((e: unknown) => e)) as ClusterCallError;
    expect(refusal.errorClass).toBe('permanent');
    c.stalled.clear();
    expect(await waitForResult(shared, 'rb')).toMatchObject({ outcome: 'done' });
  });
});
