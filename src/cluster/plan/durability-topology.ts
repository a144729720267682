import type { Chain } from '../layout.js';
import type { DurabilityTopology } from '../node-gateway.js';
import type { NodeAddress } from '../types.js';

/**
 * The topology SET_VBUCKET gives a vBucket's active (DESIGN.md Part 3 "Topology"): one chain, the head
 * first, then the replicas in chain order, padded with null up to R+1 slots. The padding is what keeps
 * durability honest: the active's majority is counted over the slots (nulls included), so a chain left
 * with only its head after a failover (R=1: `[A, null]`) cannot meet majority on its own, and in-flight
 * prepares wait for a replica to come back instead of committing on one copy. Nodes in `without` (a
 * leaving node that no longer streams) take no slot. Undefined for a chain without a head.
 */
export function durabilityTopology(
  chain: Chain,
  replicas: number,
  without: ReadonlySet<NodeAddress> = new Set(),
): DurabilityTopology | undefined {
  const head = chain[0] ?? null;
  if (head === null) return undefined;
  const rest = chain.slice(1).filter((n) => n === null || (n !== head && !without.has(n)));
  const slots: (NodeAddress | null)[] = [head, ...rest];
  while (slots.length < replicas + 1) slots.push(null);
  return [slots];
}

/** A topology as one comparable string (what was last sent is remembered by it). */
export function topologyKey(topology: DurabilityTopology): string {
  return JSON.stringify(topology);
}
