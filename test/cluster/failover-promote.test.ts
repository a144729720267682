import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  copiesLost,
  gracefulChain,
  promoteSurvivors,
  stoppedMap,
} from '../../src/cluster/failover/promote.js';
import { readmit } from '../../src/cluster/failover/recover.js';
import type { Chain, VBucketMap } from '../../src/cluster/layout.js';

const NODES = ['a', 'b', 'c', 'd', 'e'];

/** A map over NODES: each chain distinct nodes (1..4 copies) or an unowned [null]. */
const mapArb = fc
  .array(
    fc.oneof(
      fc.constant<Chain>([null]),
      fc.uniqueArray(fc.constantFrom(...NODES), { minLength: 1, maxLength: 4 }),
    ),
    {
      minLength: 1,
      maxLength: 24,
    },
  )
  .map((chains): VBucketMap => ({ vbuckets: chains.length, chains }));

const caseArb = mapArb.chain((map) =>
  fc.record({
    map: fc.constant(map),
    failed: fc.uniqueArray(fc.constantFrom(...NODES), { minLength: 1, maxLength: 3 }),
    seqnos: fc.dictionary(
      fc.constantFrom(...NODES),
      fc.array(fc.option(fc.bigInt({ min: 0n, max: 20n }), { nil: undefined }), {
        minLength: map.vbuckets,
        maxLength: map.vbuckets,
      }),
    ),
  }),
);

describe('promoting survivors when nodes fail over', () => {
  it('heads each chain whose head failed with its survivor of the highest seqno, earlier position on ties', () => {
    const map: VBucketMap = {
      vbuckets: 3,
      chains: [
        ['a', 'b', 'c'],
        ['a', 'b', 'c'],
        ['b', 'a', 'c'],
      ],
    };
    const result = promoteSurvivors({
      map,
      failed: new Set(['a']),
      seqnos: new Map([
        ['b', [5n, 7n, 3n]],
        ['c', [9n, 7n, 3n]],
      ]),
    });
    expect(result.map.chains).toEqual([
      ['c', 'b'],
      ['b', 'c'],
      ['b', 'c'],
    ]);
    expect(result.promoted).toEqual([
      { vb: 0, from: 'a', to: 'c', seqno: 9n },
      { vb: 1, from: 'a', to: 'b', seqno: 7n },
    ]);
    expect(result.lost).toEqual([]);
  });

  it('prefers a survivor whose seqno is known over one that did not answer', () => {
    const result = promoteSurvivors({
      map: { vbuckets: 1, chains: [['a', 'b', 'c']] },
      failed: new Set(['a']),
      seqnos: new Map([['c', [0n]]]),
    });
    expect(result.map.chains).toEqual([['c', 'b']]);
  });

  it('reports a vBucket whose every copy failed as lost and leaves it without a head', () => {
    const result = promoteSurvivors({
      map: { vbuckets: 2, chains: [['a'], ['b', 'a']] },
      failed: new Set(['a']),
      seqnos: new Map(),
    });
    expect(result.map.chains).toEqual([[null], ['b']]);
    expect(result.lost).toEqual([0]);
  });

  it('keeps every survivor, drops every failed node, and never invents a copy (property)', () => {
    fc.assert(
      fc.property(caseArb, ({ map, failed, seqnos }) => {
        const failedSet = new Set(failed);
        const seqnoMap = new Map(Object.entries(seqnos));
        const result = promoteSurvivors({ map, failed: failedSet, seqnos: seqnoMap });
        result.map.chains.forEach((chain, vb) => {
          const before = map.chains[vb] as Chain;
          const survivors = before.filter((n) => n !== null && !failedSet.has(n));
          expect(chain.some((n) => n !== null && failedSet.has(n))).toBe(false);
          expect([...chain].filter((n) => n !== null).sort()).toEqual([...survivors].sort());
          if (!before.some((n) => n !== null && failedSet.has(n))) expect(chain).toEqual(before);
          const head = before[0] ?? null;
          if (head !== null && failedSet.has(head) && survivors.length > 0) {
            // the new head's seqno is the highest known among the survivors
            const known = survivors
              .map((n) => seqnoMap.get(n as string)?.[vb])
              .filter((s) => s !== undefined);
            const best = seqnoMap.get(chain[0] as string)?.[vb];
            if (known.length > 0) expect(known.every((s) => (best ?? -1n) >= (s as bigint))).toBe(true);
          }
        });
        expect(result.lost).toEqual(copiesLost(map, failedSet));
      }),
    );
  });

  it('stops the streams of chains headed by a failed node and keeps the others without it', () => {
    const stopped = stoppedMap(
      {
        vbuckets: 3,
        chains: [
          ['a', 'b'],
          ['b', 'a', 'c'],
          ['b', 'c'],
        ],
      },
      new Set(['a']),
    );
    expect(stopped.chains).toEqual([[null], ['b', 'c'], ['b', 'c']]);
  });

  it('moves the leaving node to the end of a chain taken over gracefully', () => {
    expect(gracefulChain(['a', 'b', 'c'], 'a', 'b')).toEqual(['b', 'c', 'a']);
    expect(gracefulChain(['a', null, 'c'], 'a', 'c')).toEqual(['c', 'a']);
  });
});

describe('readmitting a recovered node', () => {
  it('appends it as a replica where its vBuckets lack copies, heads chains with none, and skips full ones', () => {
    const map: VBucketMap = {
      vbuckets: 4,
      chains: [['b'], ['b', 'c'], [null], ['c', null]],
    };
    const result = readmit(map, 'a', [0, 1, 2, 3], 1);
    expect(result.map.chains).toEqual([['b', 'a'], ['b', 'c'], ['a'], ['c', 'a']]);
    expect(result.replicas).toEqual([0, 3]);
    expect(result.activated).toEqual([2]);
  });

  it('touches only the vBuckets the node held', () => {
    const result = readmit({ vbuckets: 2, chains: [['b'], ['b']] }, 'a', [1], 1);
    expect(result.map.chains).toEqual([['b'], ['b', 'a']]);
  });
});
