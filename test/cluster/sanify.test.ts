import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Chain } from '../../src/cluster/layout.js';
import { adoptCopies, soleCopies } from '../../src/cluster/operations.js';
import { repairDirection } from '../../src/cluster/repair.js';
import { fixupMap, type ObservedState, sanifyChain, statePlan } from '../../src/cluster/sanify.js';

const obs = (entries: Record<string, ObservedState>) => new Map(Object.entries(entries));

describe('the janitor repair table (ns_server sanify_chain)', () => {
  it('keeps the chain when no node reports an active copy', () => {
    expect(sanifyChain({ chain: ['a', 'b'], observed: obs({ a: 'replica', b: 'replica' }) })).toEqual({
      rule: 'keep-none-active',
      chain: ['a', 'b'],
    });
  });

  it('keeps the chain when the one active is the chain head', () => {
    expect(sanifyChain({ chain: ['a', 'b'], observed: obs({ a: 'active', b: 'replica' }) }).rule).toBe(
      'keep-master',
    );
  });

  it('adopts the target chain when the takeover finished and every target replica is in place', () => {
    const result = sanifyChain({
      chain: ['a', 'b'],
      target: ['c', 'b'],
      observed: obs({ a: 'replica', b: 'replica', c: 'active' }),
    });
    expect(result).toEqual({ rule: 'adopt-target', chain: ['c', 'b'] });
  });

  it('adopts the target chain when the old head reports dead even if a target replica is missing', () => {
    const result = sanifyChain({
      chain: ['a', 'b'],
      target: ['c', 'd'],
      observed: obs({ a: 'dead', c: 'active' }),
    });
    expect(result).toEqual({ rule: 'adopt-target', chain: ['c', 'd'] });
  });

  it('derives the chain from the active when the target replicas are not in place', () => {
    const result = sanifyChain({
      chain: ['a', 'b', 'c'],
      target: ['b', 'd'],
      observed: obs({ a: 'replica', b: 'active', d: 'dead' }),
    });
    expect(result).toEqual({ rule: 'derive', chain: ['b', 'c', null] });
  });

  it('derives [active, null...] for an active on a node the chain does not name', () => {
    expect(sanifyChain({ chain: ['a', 'b'], observed: obs({ x: 'active' }) })).toEqual({
      rule: 'derive',
      chain: ['x', null],
    });
  });

  it('takes the one active under a null head (a map made from nodes that joined with data)', () => {
    expect(sanifyChain({ chain: [null], observed: obs({ a: 'active' }) })).toEqual({
      rule: 'derive',
      chain: ['a'],
    });
  });

  it('keeps the chain with several actives when the head is among them, and refuses otherwise', () => {
    expect(sanifyChain({ chain: ['a', 'b'], observed: obs({ a: 'active', b: 'active' }) }).rule).toBe(
      'keep-several',
    );
    expect(sanifyChain({ chain: ['a', 'b'], observed: obs({ b: 'active', c: 'active' }) })).toEqual({
      rule: 'refuse-several',
      actives: ['b', 'c'],
    });
  });

  const nodes = ['a', 'b', 'c', 'd'];
  const chainArb: fc.Arbitrary<Chain> = fc
    .uniqueArray(fc.constantFrom(...nodes), { minLength: 0, maxLength: 3 })
    .chain((ns) =>
      fc
        .tuple(fc.boolean(), fc.constant(ns))
        .map(([nullHead, list]): Chain => (nullHead || list.length === 0 ? [null, ...list.slice(1)] : list)),
    );
  const observedArb = fc
    .dictionary(
      fc.constantFrom(...nodes),
      fc.constantFrom<ObservedState>('active', 'replica', 'pending', 'dead'),
    )
    .map((d) => new Map(Object.entries(d)));
  const inputArb = fc.record({
    chain: chainArb,
    target: fc.option(chainArb, { nil: undefined }),
    observed: observedArb,
  });

  it('holds the table on arbitrary chains, targets and observations', () => {
    fc.assert(
      fc.property(inputArb, ({ chain, target, observed }) => {
        const actives = [...observed].filter(([, s]) => s === 'active').map(([n]) => n);
        const result = sanifyChain({ chain, target, observed });
        if (actives.length === 0) expect(result).toEqual({ rule: 'keep-none-active', chain });
        if (actives.length > 1) {
          if (chain[0] !== null && actives.includes(chain[0] as string))
            expect(result.rule).toBe('keep-several');
          else expect(result.rule).toBe('refuse-several');
        }
        if (actives.length === 1 && result.rule !== 'refuse-several') {
          // the map then names the one observed active as the owner ...
          expect(result.chain[0]).toBe(actives[0]);
          // ... and a second pass over the same observation keeps it (the table is a fixpoint)
          expect(sanifyChain({ chain: result.chain, target, observed }).rule).toBe('keep-master');
        }
        if (result.rule !== 'refuse-several') {
          // it never invents a node
          const known = new Set([...chain, ...(target ?? []), ...actives]);
          for (const n of result.chain) if (n !== null) expect(known.has(n)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('changes no chain while a member node is unreachable, and applies nothing while any vBucket is refused', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(chainArb, observedArb), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        (vbs, someUnreachable) => {
          const map = { vbuckets: vbs.length, chains: vbs.map(([c]) => c) };
          const observed = new Map<string, ObservedState[]>();
          vbs.forEach(([, o], vb) => {
            for (const [n, s] of o) {
              const row = observed.get(n) ?? Array<ObservedState>(vbs.length).fill('dead');
              row[vb] = s;
              observed.set(n, row);
            }
          });
          const unreachable = new Set(someUnreachable ? ['z'] : []);
          const fix = fixupMap({ map, observed, unreachable });
          if (fix.refused.length > 0 || someUnreachable) {
            expect(fix.map).toBe(map);
            expect(fix.fixes).toEqual([]);
          }
          for (const f of fix.fixes) expect(fix.map.chains[f.vb]).toEqual(f.to);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('the state plan that makes nodes match the map', () => {
  it('demotes before it promotes, so two actives never coexist', () => {
    const observed = new Map<string, ObservedState[]>([
      ['a', ['active']],
      ['b', ['replica']],
      ['c', ['replica']],
    ]);
    expect(statePlan(0, ['b', 'c'], observed)).toEqual([
      { node: 'a', vb: 0, from: 'active', to: 'dead' },
      { node: 'b', vb: 0, from: 'replica', to: 'active' },
    ]);
  });
});

describe('topology operation rules', () => {
  it('rolls back an interrupted add-node and rolls every other operation forward', () => {
    expect(repairDirection('add-node')).toBe('rollback');
    expect(repairDirection('remove-node')).toBe('rollforward');
  });

  it('adopts a joining node’s actives where the map has no owner and appends its replicas', () => {
    const map = { vbuckets: 4, chains: [[null], ['a'], [null, 'b'], ['a']] };
    const adopted = adoptCopies(map, 'n', ['active', 'active', 'active', 'replica']);
    expect(adopted.chains).toEqual([['n'], ['a'], ['n', 'b'], ['a', 'n']]);
  });

  it('names the vBuckets whose only copy is on a node', () => {
    const map = { vbuckets: 3, chains: [['a', 'b'], ['a'], [null, 'a']] };
    expect(soleCopies(map, 'a')).toEqual([1, 2]);
    expect(soleCopies(map, 'b')).toEqual([]);
  });
});
