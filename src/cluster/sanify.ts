import { type Chain, sameChain, type VBucketMap } from './layout.js';
import type { NodeAddress } from './types.js';

/**
 * The janitor's repair table, ns_server's `sanify_chain` (cluster-notes §1.4): given the stored chain of a
 * vBucket, the target (fast-forward) chain if a rebalance stored one, and the states the nodes report, what
 * should the chain be? Pure, so the table is tested directly.
 *
 * | observed actives | result |
 * |---|---|
 * | none | keep the chain (the janitor then activates per the map) |
 * | one, = chain head | keep |
 * | one, = target head, and every target replica reports replica (or the old head reports dead) | adopt the target: the takeover finished, the map update did not |
 * | one, elsewhere | derive: `[active, ...chain after its position]`, padded with null to the old length (an unknown node: `[active, null...]`) |
 * | several | keep if the chain head is among them, else refuse (act on nothing, report) |
 *
 * One dcpx difference: a null chain head also means "never assigned" (a map made from nodes that joined
 * with data), not only "every copy failed over", so one observed active under a null head is derived too;
 * that loses nothing, as nobody else claims the vBucket.
 */
export type ObservedState = 'active' | 'replica' | 'pending' | 'dead';

export type SanifyRule =
  | 'keep-none-active'
  | 'keep-master'
  | 'adopt-target'
  | 'derive'
  | 'keep-several'
  | 'refuse-several';

export type SanifyResult =
  | { readonly rule: Exclude<SanifyRule, 'refuse-several'>; readonly chain: Chain }
  | { readonly rule: 'refuse-several'; readonly actives: readonly NodeAddress[] };

export interface SanifyInput {
  readonly chain: Chain;
  /** The fast-forward chain of a stored rebalance target, if any. */
  readonly target?: Chain | undefined;
  /** The state each reachable node reports for this vBucket (absent: the node does not hold it). */
  readonly observed: ReadonlyMap<NodeAddress, ObservedState>;
}

export function sanifyChain({ chain, target, observed }: SanifyInput): SanifyResult {
  const actives = [...observed].filter(([, s]) => s === 'active').map(([n]) => n);
  const head = chain[0] ?? null;
  if (actives.length === 0) return { rule: 'keep-none-active', chain };
  if (actives.length > 1) {
    return head !== null && actives.includes(head)
      ? { rule: 'keep-several', chain }
      : { rule: 'refuse-several', actives: actives.sort() };
  }
  const active = actives[0] as NodeAddress;
  if (active === head) return { rule: 'keep-master', chain };
  if (target && target[0] === active) {
    const replicasInPlace = target.slice(1).every((n) => n === null || observed.get(n) === 'replica');
    const oldMasterDead = head !== null && observed.get(head) === 'dead';
    if (replicasInPlace || oldMasterDead) return { rule: 'adopt-target', chain: target };
  }
  return { rule: 'derive', chain: deriveChain(active, chain) };
}

/** ns_server's `derive_chain`: the active first, then what followed it in the chain, null-padded. */
export function deriveChain(active: NodeAddress, chain: Chain): Chain {
  const length = Math.max(chain.length, 1);
  const at = chain.indexOf(active);
  const rest = at < 0 ? [] : chain.slice(at + 1);
  const derived: (NodeAddress | null)[] = [active, ...rest];
  while (derived.length < length) derived.push(null);
  return derived;
}

export interface VBucketFix {
  readonly vb: number;
  readonly rule: SanifyRule;
  readonly from: Chain;
  readonly to: Chain;
}

export interface MapFixup {
  /** The map to store (the input map when nothing changed). */
  readonly map: VBucketMap;
  /** vBuckets whose chain changed. */
  readonly fixes: readonly VBucketFix[];
  /** vBuckets with several actives and the head not among them: nothing is applied while any exists. */
  readonly refused: readonly { vb: number; actives: readonly NodeAddress[] }[];
  /** vBuckets left alone because a member node did not answer (a change could be based on partial info). */
  readonly waiting: readonly number[];
}

/**
 * Applies the table to every vBucket. As ns_server, any refused vBucket means nothing is applied (the map
 * is returned unchanged). While some member node is unreachable only `keep` results are taken: a change
 * of the chain could rest on a copy that node holds.
 */
export function fixupMap(input: {
  readonly map: VBucketMap;
  readonly target?: VBucketMap | undefined;
  /** Per reachable node: its state for each vBucket, indexed by vBucket. */
  readonly observed: ReadonlyMap<NodeAddress, readonly ObservedState[]>;
  readonly unreachable: ReadonlySet<NodeAddress>;
}): MapFixup {
  const { map, target, observed, unreachable } = input;
  const fixes: VBucketFix[] = [];
  const refused: { vb: number; actives: readonly NodeAddress[] }[] = [];
  const waiting: number[] = [];
  const chains: Chain[] = [];
  for (let vb = 0; vb < map.vbuckets; vb++) {
    const chain = map.chains[vb] ?? [null];
    const states = new Map<NodeAddress, ObservedState>();
    for (const [node, perVb] of observed) {
      const s = perVb[vb];
      if (s !== undefined) states.set(node, s);
    }
    const result = sanifyChain({ chain, target: target?.chains[vb], observed: states });
    if (result.rule === 'refuse-several') {
      refused.push({ vb, actives: result.actives });
      chains.push(chain);
      continue;
    }
    if (sameChain(result.chain, chain)) {
      chains.push(chain);
      continue;
    }
    if (unreachable.size > 0) {
      waiting.push(vb);
      chains.push(chain);
      continue;
    }
    fixes.push({ vb, rule: result.rule, from: chain, to: result.chain });
    chains.push(result.chain);
  }
  if (refused.length > 0) return { map, fixes: [], refused, waiting };
  return { map: fixes.length > 0 ? { vbuckets: map.vbuckets, chains } : map, fixes, refused, waiting };
}

/**
 * The state changes that make the nodes match the map for one vBucket: the head active, the rest of the
 * chain replica, other members holding a live copy dead. Demotions come first, so two actives never
 * coexist (the caller applies them in the returned order).
 */
export function statePlan(
  vb: number,
  chain: Chain,
  observed: ReadonlyMap<NodeAddress, readonly ObservedState[]>,
): { node: NodeAddress; vb: number; from: ObservedState; to: ObservedState }[] {
  const demote: { node: NodeAddress; vb: number; from: ObservedState; to: ObservedState }[] = [];
  const promote: typeof demote = [];
  for (const [node, perVb] of observed) {
    const from = perVb[vb];
    if (from === undefined) continue;
    const at = chain.indexOf(node);
    const to: ObservedState = at === 0 ? 'active' : at > 0 ? 'replica' : 'dead';
    if (from === to) continue;
    (to === 'active' ? promote : demote).push({ node, vb, from, to });
  }
  return [...demote, ...promote];
}
