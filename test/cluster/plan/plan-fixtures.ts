import fc from 'fast-check';
import type { PlanInput, PlanNode, VBucketMap } from '../../../src/cluster/plan/index.js';
import { planMap } from '../../../src/cluster/plan/index.js';

export const address = (i: number) => `10.0.0.${i}:11210`;

/** Node i of a pool of 16 possible addresses. */
export const nodesOf = (indexes: readonly number[], group?: (i: number) => string | undefined): PlanNode[] =>
  indexes.map((i) => {
    const g = group?.(i);
    return g === undefined ? { address: address(i) } : { address: address(i), group: g };
  });

export type Grouping = 'none' | 'equal' | 'random';

/** A set of 1..12 distinct nodes drawn from 16 addresses, with server groups as `grouping` says. */
export function nodeSetArb(grouping: Grouping, min = 1, max = 12): fc.Arbitrary<PlanNode[]> {
  const indexes = fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: min, maxLength: max });
  if (grouping === 'none') return indexes.map((ix) => nodesOf(ix));
  if (grouping === 'equal') {
    // size s groups of g nodes each: take the first s*g indexes.
    return fc
      .tuple(
        fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: 12, maxLength: 12 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 2, max: 4 }),
      )
      .map(([ix, groups, size]) => {
        const chosen = ix.slice(0, groups * size);
        return chosen.map((i, j) => ({ address: address(i), group: `rack-${j % groups}` }));
      });
  }
  return fc
    .tuple(
      indexes,
      fc.array(fc.option(fc.constantFrom('a', 'b', 'c', 'd'), { nil: undefined }), {
        minLength: 16,
        maxLength: 16,
      }),
    )
    .map(([ix, groups]) => nodesOf(ix, (i) => groups[i]));
}

export type CurrentKind =
  | 'none'
  | 'balanced-other'
  | 'node-removed'
  | 'node-failed'
  | 'node-added'
  | 'garbage';

export interface Scenario {
  readonly kind: CurrentKind;
  readonly input: PlanInput;
}

/** Chains of random nodes (known and unknown), nulls and duplicates: a map nothing planned. */
function garbageMap(vbuckets: number, seedChains: readonly (readonly (number | null)[])[]): VBucketMap {
  return {
    vbuckets,
    chains: Array.from({ length: vbuckets }, (_, vb) => {
      const c = seedChains[vb % Math.max(1, seedChains.length)] ?? [null];
      return c.map((i) => (i === null ? null : address(i)));
    }),
  };
}

/**
 * An input over `nodes` with a current map of the given kind: the balanced map of another node set
 * (other count of replicas too), the map of `nodes` plus one node now removed (its copies must move),
 * the same after a failover (chains with the node dropped, so some vBuckets lack copies), the map of
 * `nodes` minus one (now added), or garbage.
 */
export function scenarioArb(
  grouping: Grouping,
  vbuckets: fc.Arbitrary<number>,
  kinds: readonly CurrentKind[] = [
    'none',
    'balanced-other',
    'node-removed',
    'node-failed',
    'node-added',
    'garbage',
  ],
): fc.Arbitrary<Scenario> {
  return fc
    .record({
      nodes: nodeSetArb(grouping),
      vbuckets,
      replicas: fc.integer({ min: 0, max: 3 }),
      kind: fc.constantFrom<CurrentKind>(...kinds),
      other: fc.uniqueArray(fc.integer({ min: 0, max: 15 }), { minLength: 1, maxLength: 12 }),
      otherReplicas: fc.integer({ min: 0, max: 3 }),
      extra: fc.integer({ min: 0, max: 15 }),
      garbage: fc.array(
        fc.array(fc.option(fc.integer({ min: 0, max: 17 }), { nil: null }), { maxLength: 5 }),
        {
          minLength: 1,
          maxLength: 20,
        },
      ),
    })
    .map(({ nodes, vbuckets: v, replicas, kind, other, otherReplicas, extra, garbage }) => {
      const base = { nodes, vbuckets: v, replicas };
      const inSet = new Set(nodes.map((n) => n.address));
      const outsider = [...Array(16).keys()].map(address).find((a) => !inSet.has(a)) ?? address(extra);
      switch (kind) {
        case 'none':
          return { kind, input: base };
        case 'balanced-other': {
          const current = planMap({ nodes: nodesOf(other), vbuckets: v, replicas: otherReplicas });
          return { kind, input: { ...base, current } };
        }
        case 'node-removed':
        case 'node-failed': {
          const before = planMap({ nodes: [...nodes, { address: outsider }], vbuckets: v, replicas });
          const current =
            kind === 'node-removed'
              ? before
              : {
                  // ns_server promote_replica: the failed node becomes null at the chain's end.
                  vbuckets: v,
                  chains: before.chains.map((c) => {
                    const kept = c.filter((n) => n !== outsider);
                    return [...kept, ...Array<null>(c.length - kept.length).fill(null)];
                  }),
                };
          return { kind, input: { ...base, current } };
        }
        case 'node-added': {
          const fewer = nodes.length > 1 ? nodes.slice(0, -1) : nodes;
          const current = planMap({ nodes: fewer, vbuckets: v, replicas });
          return { kind, input: { ...base, current } };
        }
        default:
          return { kind, input: { ...base, current: garbageMap(v, garbage) } };
      }
    });
}

/** The group of each planned node, an ungrouped node being its own group. */
export function groupKey(nodes: readonly PlanNode[]): Map<string, string> {
  return new Map(
    nodes.map((n) => [n.address, n.group === undefined ? `node:${n.address}` : `group:${n.group}`]),
  );
}

/** Whether every server group of `nodes` has at most N/K nodes (the balance is then feasible). */
export function groupsFeasible(nodes: readonly PlanNode[], replicas: number): boolean {
  const k = Math.min(replicas + 1, nodes.length);
  const sizes = new Map<string, number>();
  for (const g of groupKey(nodes).values()) sizes.set(g, (sizes.get(g) ?? 0) + 1);
  return sizes.size < k || [...sizes.values()].every((s) => s * k <= nodes.length);
}
