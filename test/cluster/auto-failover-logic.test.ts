import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type AutoFailoverDecision,
  type AutoFailoverFrame,
  type AutoFailoverState,
  autoFailoverStep,
  INITIAL_AUTO_FAILOVER_STATE,
  type NodeHealth,
} from '../../src/cluster/failover/auto-failover-logic.js';
import { copiesLost } from '../../src/cluster/failover/promote.js';
import type { VBucketMap } from '../../src/cluster/layout.js';

const A = 'a:1';
const B = 'b:1';
const C = 'c:1';
const D = 'd:1';

/** Chains over the nodes, two copies each (every pair once): no single node holds a last copy. */
const PAIRS: VBucketMap = {
  vbuckets: 6,
  chains: [
    [A, B],
    [B, C],
    [C, D],
    [D, A],
    [A, C],
    [B, D],
  ],
};

interface Run {
  state: AutoFailoverState;
  now: number;
  decisions: { at: number; decision: AutoFailoverDecision }[];
  health: ReadonlyMap<string, NodeHealth>;
}

/** Steps one frame per second for `seconds`, with `down` nodes not answering. */
function frames(
  run: Run,
  seconds: number,
  down: readonly string[],
  options: Partial<Omit<AutoFailoverFrame, 'now' | 'nodes'>> & { groups?: Record<string, string> } = {},
): Run {
  let { state, now, health } = run;
  const decisions = [...run.decisions];
  const nodes = Object.keys(options.groups ?? { [A]: '', [B]: '', [C]: '', [D]: '' });
  for (let i = 0; i < seconds; i++) {
    now += 1_000;
    const step = autoFailoverStep(state, {
      now,
      nodes: nodes.map((address) => ({
        address,
        group: options.groups?.[address],
        up: !down.includes(address),
      })),
      autoFailoverS: options.autoFailoverS ?? 10,
      autoFailoverMax: options.autoFailoverMax ?? 1,
      count: options.count ?? 0,
      map: options.map ?? PAIRS,
    });
    state = step.state;
    health = step.health;
    for (const decision of step.decisions) decisions.push({ at: now, decision });
  }
  return { state, now, decisions, health };
}

const start = (): Run => ({ state: INITIAL_AUTO_FAILOVER_STATE, now: 0, decisions: [], health: new Map() });

describe('the auto-failover state machine', () => {
  it('goes half_down, nearly_down 2 s before the timeout, and fails a node over when it has been down for the timeout', () => {
    let run = frames(start(), 1, [A]);
    expect(run.health.get(A)).toBe('half_down');
    run = frames(run, 7, [A]); // down 7 s after the first down frame
    expect(run.health.get(A)).toBe('half_down');
    run = frames(run, 1, [A]);
    expect(run.health.get(A)).toBe('nearly_down');
    run = frames(run, 1, [A]);
    expect(run.decisions).toEqual([]);
    run = frames(run, 1, [A]);
    expect(run.health.get(A)).toBe('failover');
    expect(run.decisions).toEqual([
      {
        at: 11_000,
        decision: expect.objectContaining({ kind: 'failover', nodes: [A], reason: 'node-down' }),
      },
    ]);
  });

  it('starts the timeout again when a node answers in between', () => {
    let run = frames(start(), 9, [A]);
    run = frames(run, 1, []);
    expect(run.health.get(A)).toBe('up');
    run = frames(run, 9, [A]);
    expect(run.decisions).toEqual([]);
    run = frames(run, 2, [A]);
    expect(run.decisions.map((d) => d.decision.kind)).toEqual(['failover']);
  });

  it('honours a timeout changed while a node is down (the settings are re-read every frame)', () => {
    let run = frames(start(), 30, [A], { autoFailoverS: 120 });
    expect(run.decisions).toEqual([]);
    run = frames(run, 3, [A], { autoFailoverS: 10 });
    expect(run.decisions.map((d) => d.decision.kind)).toEqual(['failover']);
  });

  it('refuses when several nodes are down at once and they are not one server group, reporting it once', () => {
    const run = frames(start(), 30, [A, B]);
    expect(run.decisions).toHaveLength(1);
    expect(run.decisions[0]?.decision).toMatchObject({
      kind: 'refuse',
      reason: 'several-nodes-down',
      nodes: [A, B],
    });
  });

  it('fails over a whole server group that went down together', () => {
    const groups = { [A]: 'g1', [B]: 'g1', [C]: 'g2', [D]: 'g3' };
    const map: VBucketMap = {
      vbuckets: 3,
      chains: [
        [A, C],
        [C, D],
        [B, D],
      ],
    };
    const run = frames(start(), 11, [A, B], { groups, map, autoFailoverMax: 2 });
    expect(run.decisions.map((d) => d.decision)).toEqual([
      expect.objectContaining({ kind: 'failover', nodes: [A, B], reason: 'group-down' }),
    ]);
  });

  it('refuses part of a group together with a node of another group', () => {
    const groups = { [A]: 'g1', [B]: 'g1', [C]: 'g2', [D]: 'g2' };
    const run = frames(start(), 12, [A, C], { groups, autoFailoverMax: 2 });
    expect(run.decisions.map((d) => d.decision.reason)).toEqual(['several-nodes-down']);
  });

  it('refuses once the count reached the maximum, and fails over after the count is reset', () => {
    let run = frames(start(), 15, [A], { count: 1, autoFailoverMax: 1 });
    expect(run.decisions.map((d) => d.decision)).toEqual([
      expect.objectContaining({ kind: 'refuse', reason: 'max-count' }),
    ]);
    run = frames(run, 1, [A], { count: 0, autoFailoverMax: 1 });
    expect(run.decisions.map((d) => d.decision.kind)).toEqual(['refuse', 'failover']);
  });

  it('does nothing but report when auto-failover is off (max 0)', () => {
    const run = frames(start(), 15, [A], { autoFailoverMax: 0 });
    expect(run.decisions.map((d) => d.decision.reason)).toEqual(['disabled']);
  });

  it('refuses when a vBucket would lose its last copy', () => {
    const map: VBucketMap = { vbuckets: 2, chains: [[A], [B, C]] };
    const run = frames(start(), 15, [A], { map });
    expect(run.decisions.map((d) => d.decision)).toEqual([
      expect.objectContaining({ kind: 'refuse', reason: 'last-copy', message: expect.stringMatching(/0/) }),
    ]);
  });

  it('refuses to fail over the last member', () => {
    const run = frames(start(), 15, [A], { groups: { [A]: 'g' }, map: { vbuckets: 1, chains: [[null]] } });
    expect(run.decisions.map((d) => d.decision.reason)).toEqual(['last-node']);
  });

  it('never decides a failover of several nodes unless one whole group, nor one that loses a copy or passes the max (property)', () => {
    const nodes = [A, B, C, D];
    const frameArb = fc.record({
      down: fc.subarray(nodes),
      count: fc.integer({ min: 0, max: 3 }),
      max: fc.integer({ min: 0, max: 3 }),
    });
    fc.assert(
      fc.property(
        fc.array(frameArb, { minLength: 1, maxLength: 40 }),
        fc.constantFrom<Record<string, string>>(
          { [A]: 'g1', [B]: 'g1', [C]: 'g2', [D]: 'g3' },
          { [A]: '', [B]: '', [C]: '', [D]: '' },
        ),
        fc.array(fc.uniqueArray(fc.constantFrom(...nodes), { minLength: 1, maxLength: 3 }), {
          minLength: 1,
          maxLength: 8,
        }),
        (sequence, groups, chains) => {
          const map: VBucketMap = { vbuckets: chains.length, chains };
          let run = start();
          for (const f of sequence) {
            const before = run.decisions.length;
            run = frames(run, 4, f.down, {
              groups,
              map,
              count: f.count,
              autoFailoverMax: f.max,
              autoFailoverS: 5,
            });
            for (const { decision } of run.decisions.slice(before)) {
              if (decision.kind !== 'failover') continue;
              if (decision.nodes.length > 1) {
                const group = groups[decision.nodes[0] as string];
                expect(group).not.toBe('');
                expect(nodes.filter((n) => groups[n] === group).sort()).toEqual([...decision.nodes].sort());
              }
              expect(copiesLost(map, new Set(decision.nodes))).toEqual([]);
              expect(f.count + decision.nodes.length).toBeLessThanOrEqual(f.max);
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
