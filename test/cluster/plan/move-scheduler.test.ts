import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  backfillNodes,
  type Move,
  MoveScheduler,
  movesBetween,
  planMap,
  type SchedulerLimits,
  type VBucketMap,
} from '../../../src/cluster/plan/index.js';
import { address, nodesOf } from './plan-fixtures.js';

const n = address;

/** The moves of a rebalance from the map of node set `from` to node set `to` (with unowned vBuckets). */
function rebalanceMoves(v: number, r: number, from: number[], to: number[], lost: number[] = []): Move[] {
  const before = planMap({ nodes: nodesOf(from), vbuckets: v, replicas: r });
  const current: VBucketMap = {
    vbuckets: v,
    chains: before.chains.map((chain, vb) => (lost.includes(vb) ? [null] : chain)),
  };
  return movesBetween(current, planMap({ nodes: nodesOf(to), vbuckets: v, replicas: r, current }));
}

interface Step {
  readonly started: readonly number[];
}

/**
 * Drives a scheduler to the end like a rebalance runner: after each `next()`, the runner reports, in an
 * order drawn from `picks`, the backfill or the whole move of one running vBucket done. Checks the caps
 * from the outside (from the moves started and the events reported) at every step.
 */
function drive(moves: readonly Move[], limits: SchedulerLimits, picks: readonly number[]): Step[] {
  const scheduler = new MoveScheduler(moves, limits);
  const movesPerNode = limits.movesPerNode ?? 64;
  const backfilling = new Map<number, Move>();
  const running = new Map<number, Move>();
  const started = new Set<number>();
  const steps: Step[] = [];
  let pick = 0;
  for (let guard = 0; guard < 10 * moves.length + 10; guard++) {
    const batch = scheduler.next();
    for (const m of batch) {
      if (started.has(m.vb)) throw new Error(`vBucket ${m.vb} started twice`);
      started.add(m.vb);
      running.set(m.vb, m);
      if (m.from[0] !== null) backfilling.set(m.vb, m);
    }
    steps.push({ started: batch.map((m) => m.vb) });
    const backfills = new Map<string, number>();
    for (const m of backfilling.values())
      for (const x of backfillNodes(m)) backfills.set(x, (backfills.get(x) ?? 0) + 1);
    expect(Math.max(0, ...backfills.values())).toBeLessThanOrEqual(limits.backfillsPerNode);
    const inFlight = new Map<string, number>();
    for (const m of running.values()) {
      if (m.from[0] === null) continue;
      for (const x of new Set([m.from[0], m.to[0]])) if (x) inFlight.set(x, (inFlight.get(x) ?? 0) + 1);
    }
    expect(Math.max(0, ...inFlight.values())).toBeLessThanOrEqual(movesPerNode);
    if (scheduler.isDone()) break;
    // Something is running whenever the scheduler is not done (it never stalls).
    if (running.size === 0) throw new Error('the scheduler stalled: nothing running, not done');
    const vbs = [...running.keys()].sort((x, y) => x - y);
    const vb = vbs[(picks[pick++ % Math.max(1, picks.length)] ?? 0) % vbs.length] as number;
    if (backfilling.has(vb) && (picks[pick++ % Math.max(1, picks.length)] ?? 0) % 2 === 0) {
      backfilling.delete(vb);
      scheduler.backfillDone(vb);
    } else {
      backfilling.delete(vb);
      running.delete(vb);
      scheduler.moveDone(vb);
    }
  }
  expect(scheduler.isDone()).toBe(true);
  expect(started.size).toBe(moves.length);
  const progress = scheduler.progress();
  expect(progress.done).toBe(moves.length);
  expect(progress.total).toBe(moves.length);
  for (const p of Object.values(progress.nodes)) expect(p.done).toBe(p.total);
  return steps;
}

const scenario = fc.record({
  v: fc.integer({ min: 1, max: 128 }),
  r: fc.integer({ min: 0, max: 3 }),
  from: fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 8 }),
  to: fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 8 }),
  lost: fc.array(fc.nat(127), { maxLength: 8 }),
  backfillsPerNode: fc.integer({ min: 1, max: 6 }),
  movesPerNode: fc.option(fc.integer({ min: 1, max: 8 }), { nil: undefined }),
  picks: fc.array(fc.nat(), { minLength: 1, maxLength: 50 }),
});

describe('MoveScheduler (property)', () => {
  it('never exceeds the backfill and in-flight caps, never stalls, and starts and finishes every move once', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const moves = rebalanceMoves(s.v, s.r, s.from, s.to, s.lost);
        drive(moves, { backfillsPerNode: s.backfillsPerNode, movesPerNode: s.movesPerNode }, s.picks);
      }),
      { numRuns: 80 },
    );
  });

  it('starts every move of an unowned vBucket in the first batch, whatever the caps', () => {
    fc.assert(
      fc.property(scenario, (s) => {
        const moves = rebalanceMoves(s.v, s.r, s.from, s.to, s.lost);
        const first = new MoveScheduler(moves, { backfillsPerNode: 1, movesPerNode: 1 }).next();
        const unowned = moves.filter((m) => m.from[0] === null).map((m) => m.vb);
        expect(first.map((m) => m.vb).filter((vb) => unowned.includes(vb))).toEqual(unowned);
      }),
      { numRuns: 60 },
    );
  });

  it('schedules the same way whatever the order the moves are given in', () => {
    fc.assert(
      fc.property(scenario, fc.integer(), (s, seed) => {
        const moves = rebalanceMoves(s.v, s.r, s.from, s.to, s.lost);
        const shuffled = [...moves].sort(
          (x, y) => ((x.vb * 2654435761) ^ seed) - ((y.vb * 2654435761) ^ seed),
        );
        const limits = { backfillsPerNode: s.backfillsPerNode, movesPerNode: s.movesPerNode };
        expect(drive(shuffled, limits, s.picks)).toEqual(drive(moves, limits, s.picks));
      }),
      { numRuns: 25 },
    );
  });
});

describe('MoveScheduler choices', () => {
  it('starts nothing more while every backfill slot is taken, and the next move once a backfill is done', () => {
    const moves: Move[] = [
      { vb: 0, from: [n(0), n(1)], to: [n(0), n(2)] },
      { vb: 1, from: [n(0), n(1)], to: [n(0), n(3)] },
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 1 });
    expect(s.next().map((m) => m.vb)).toHaveLength(1);
    expect(s.next()).toEqual([]);
    const [first] = s.running();
    s.backfillDone(first?.vb as number);
    expect(s.next()).toHaveLength(1);
    expect(s.load(n(0))).toEqual({ backfills: 1, moves: 2 });
  });

  it('caps the moves in flight on a node even when their backfills are done', () => {
    const moves: Move[] = [0, 1, 2].map((vb) => ({ vb, from: [n(0)], to: [n(vb + 1)] }));
    const s = new MoveScheduler(moves, { backfillsPerNode: 4, movesPerNode: 2 });
    const batch = s.next();
    expect(batch).toHaveLength(2);
    for (const m of batch) s.backfillDone(m.vb);
    expect(s.next()).toEqual([]);
    s.moveDone(batch[0]?.vb as number);
    expect(s.next().map((m) => m.vb)).toEqual([2]);
  });

  it('starts first the move on the node with the most backfill work left (busiest node first)', () => {
    // n(8) is charged by four moves, n(9) by one: with one slot per node, n(8)'s first move goes first
    // although vBucket 0 is n(9)'s, and n(9)'s starts beside it.
    const moves: Move[] = [
      { vb: 0, from: [n(9)], to: [n(1)] },
      ...[1, 2, 3, 4].map((vb) => ({ vb, from: [n(8)], to: [n(vb + 1)] })),
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 1 });
    expect(s.next().map((m) => m.vb)).toEqual([1, 0]);
  });

  it('spreads backfills over source-destination pairs before doubling one up', () => {
    // Two moves n(0) -> n(2) and one n(1) -> n(2); with 2 slots per node, the second move started is
    // n(1) -> n(2), not the other n(0) -> n(2).
    const moves: Move[] = [
      { vb: 0, from: [n(0)], to: [n(2)] },
      { vb: 1, from: [n(0)], to: [n(2)] },
      { vb: 2, from: [n(1)], to: [n(2)] },
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 2 });
    expect(s.next().map((m) => m.vb)).toEqual([0, 2]);
  });

  it('starts active moves (head changes) before replica-only moves of the same weight', () => {
    const moves: Move[] = [
      { vb: 0, from: [n(0), n(1)], to: [n(0), n(2)] },
      { vb: 1, from: [n(0), n(1)], to: [n(2), n(1)] },
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 1 });
    expect(s.next().map((m) => m.vb)).toEqual([1]);
  });

  it('reports progress per node for every node of the old and new chains', () => {
    const moves: Move[] = [
      { vb: 0, from: [n(0), n(1)], to: [n(0), n(2)] },
      { vb: 1, from: [null], to: [n(3)] },
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 4 });
    expect(s.next()).toHaveLength(2);
    s.moveDone(1);
    expect(s.progress()).toEqual({
      done: 1,
      total: 2,
      nodes: {
        [n(0)]: { done: 0, total: 1 },
        [n(1)]: { done: 0, total: 1 },
        [n(2)]: { done: 0, total: 1 },
        [n(3)]: { done: 1, total: 1 },
      },
    });
  });

  it('frees the slots of a failed move and leaves it out of the done count', () => {
    const moves: Move[] = [
      { vb: 0, from: [n(0)], to: [n(1)] },
      { vb: 1, from: [n(0)], to: [n(2)] },
    ];
    const s = new MoveScheduler(moves, { backfillsPerNode: 1 });
    const [first] = s.next();
    s.moveFailed(first?.vb as number);
    expect(s.failed()).toEqual([first]);
    const [second] = s.next();
    s.moveDone(second?.vb as number);
    expect(s.isDone()).toBe(true);
    expect(s.progress().done).toBe(1);
  });

  it('rejects limits below 1 and two moves of one vBucket', () => {
    expect(() => new MoveScheduler([], { backfillsPerNode: 0 })).toThrow(RangeError);
    const m: Move = { vb: 0, from: [n(0)], to: [n(1)] };
    expect(() => new MoveScheduler([m, m], { backfillsPerNode: 1 })).toThrow(RangeError);
  });
});
