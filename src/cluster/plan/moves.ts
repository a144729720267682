import { type Chain, sameChain, type VBucketMap } from '../layout.js';
import type { NodeAddress } from '../types.js';
import type { Move } from './index.js';

/** The moves from `current` to `target`: one per vBucket whose chain differs. */
export function movesBetween(current: VBucketMap, target: VBucketMap): Move[] {
  const moves: Move[] = [];
  target.chains.forEach((to, vb) => {
    const from: Chain = current.chains[vb] ?? [null];
    if (!sameChain(from, to)) moves.push({ vb, from, to });
  });
  return moves;
}

/**
 * The nodes a move charges a backfill to (vbucket_move_scheduler `backfill_nodes`): the old master, the
 * new master if it differs, and every new replica not already in the old chain.
 */
export function backfillNodes(move: Move): NodeAddress[] {
  const nodes = new Set<NodeAddress>();
  const oldHead = move.from[0] ?? null;
  const newHead = move.to[0] ?? null;
  if (oldHead !== null) nodes.add(oldHead);
  if (newHead !== null && newHead !== oldHead) nodes.add(newHead);
  for (const n of move.to.slice(1)) if (n !== null && !move.from.includes(n)) nodes.add(n);
  return [...nodes];
}
