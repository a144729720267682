import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  backfillNodes,
  type CopyInFlight,
  movesBetween,
  planMap,
  replicationTopology,
  type VBucketMap,
} from '../../../src/cluster/plan/index.js';
import { address, nodesOf } from './plan-fixtures.js';

const [a, b, c, d] = [0, 1, 2, 3].map(address) as [string, string, string, string];

describe('movesBetween', () => {
  it('lists one move per vBucket whose chain differs, with the old and new chains', () => {
    const current: VBucketMap = {
      vbuckets: 3,
      chains: [
        [a, b],
        [b, c],
        [c, a],
      ],
    };
    const target: VBucketMap = {
      vbuckets: 3,
      chains: [
        [a, b],
        [c, b],
        [c, d],
      ],
    };
    expect(movesBetween(current, target)).toEqual([
      { vb: 1, from: [b, c], to: [c, b] },
      { vb: 2, from: [c, a], to: [c, d] },
    ]);
  });

  it('moves a vBucket missing from the current map from an unowned chain', () => {
    expect(movesBetween({ vbuckets: 1, chains: [] }, { vbuckets: 1, chains: [[a]] })).toEqual([
      { vb: 0, from: [null], to: [a] },
    ]);
  });

  it('finds nothing to move between a map and itself, and every differing vBucket otherwise (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 2 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 6 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { minLength: 1, maxLength: 6 }),
        (v, r, x, y) => {
          const from = planMap({ nodes: nodesOf(x), vbuckets: v, replicas: r });
          const to = planMap({ nodes: nodesOf(y), vbuckets: v, replicas: r, current: from });
          expect(movesBetween(from, from)).toEqual([]);
          const moved = new Set(movesBetween(from, to).map((m) => m.vb));
          to.chains.forEach((chain, vb) => {
            expect(moved.has(vb)).toBe(JSON.stringify(chain) !== JSON.stringify(from.chains[vb]));
          });
        },
      ),
      { numRuns: 40 },
    );
  });
});

describe('backfillNodes (vbucket_move_scheduler backfill_nodes)', () => {
  it('charges the old master, the new master and each new replica not in the old chain', () => {
    expect(backfillNodes({ vb: 0, from: [a, b], to: [c, d] }).sort()).toEqual([a, c, d].sort());
  });

  it('charges only the old master when the new chain only reorders the old one', () => {
    expect(backfillNodes({ vb: 0, from: [a, b], to: [b, a] }).sort()).toEqual([a, b].sort());
    expect(backfillNodes({ vb: 0, from: [a, b, c], to: [a, c, b] })).toEqual([a]);
  });

  it('charges the new replica on a replica-only move, and nothing for an unowned vBucket but its new nodes', () => {
    expect(backfillNodes({ vb: 0, from: [a, b], to: [a, c] }).sort()).toEqual([a, c].sort());
    expect(backfillNodes({ vb: 0, from: [null], to: [a, b] }).sort()).toEqual([a, b].sort());
  });
});

describe('replicationTopology', () => {
  it('streams each replica from its chain head, and nothing into a node without replicas', () => {
    const map: VBucketMap = {
      vbuckets: 3,
      chains: [
        [a, b],
        [b, a],
        [c, null],
      ],
    };
    const t = replicationTopology(map, [], [a, b, c, d]);
    expect(Object.fromEntries(t)).toEqual({ [a]: { [b]: [1] }, [b]: { [a]: [0] }, [c]: {}, [d]: {} });
  });

  it('streams a copy in flight from the old head, overriding the chain', () => {
    const map: VBucketMap = { vbuckets: 1, chains: [[a, b]] };
    const copies: CopyInFlight[] = [
      { vb: 0, source: a, target: c },
      { vb: 0, source: c, target: b },
    ];
    const t = replicationTopology(map, copies, [a, b, c]);
    expect(t.get(c)).toEqual({ [a]: [0] });
    expect(t.get(b)).toEqual({ [c]: [0] });
  });

  it("never streams a copy in flight into the vBucket's current head", () => {
    const map: VBucketMap = { vbuckets: 1, chains: [[a, b]] };
    const t = replicationTopology(map, [{ vb: 0, source: b, target: a }], [a, b]);
    expect(t.get(a)).toEqual({});
  });

  it('never streams into a head, streams every replica of a headed chain, from the head (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 64 }),
        fc.integer({ min: 0, max: 3 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 9 })), {
          maxLength: 10,
        }),
        (v, r, ix, raw) => {
          const map = planMap({ nodes: nodesOf(ix), vbuckets: v, replicas: r });
          const copies = raw.map(([vb, s, t]) => ({ vb: vb % v, source: address(s), target: address(t) }));
          const members = nodesOf(ix).map((n) => n.address);
          const topology = replicationTopology(map, copies, members);
          for (const m of members) expect(topology.has(m)).toBe(true);
          const sourceOf = (node: string, vb: number) => {
            for (const [source, vbs] of Object.entries(topology.get(node) ?? {}))
              if (vbs.includes(vb)) return source;
            return undefined;
          };
          map.chains.forEach((chain, vb) => {
            const head = chain[0] as string;
            expect(sourceOf(head, vb)).toBeUndefined();
            const overridden = new Set(
              copies.filter((x) => x.vb === vb && x.source !== x.target).map((x) => x.target),
            );
            for (const replica of chain.slice(1)) {
              if (!overridden.has(replica as string)) expect(sourceOf(replica as string, vb)).toBe(head);
            }
          });
        },
      ),
      { numRuns: 60 },
    );
  });
});
