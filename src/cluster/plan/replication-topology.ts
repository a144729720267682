import type { VBucketMap } from '../layout.js';
import type { ReplicationTopology } from '../node-gateway.js';
import type { NodeAddress } from '../types.js';
import type { CopyInFlight } from './index.js';

/**
 * The replica streams into each node (DESIGN.md "Who decides what"): for every chain with a head, each
 * replica streams the vBucket from the head; each copy being built by a move streams from the move's old
 * head (it overrides the chain's source for that node and vBucket; never into the vBucket's head). Every
 * node of `members` gets an entry, empty when nothing streams into it (so its agent closes what it ran
 * before).
 */
export function replicationTopology(
  map: VBucketMap,
  copiesInFlight: readonly CopyInFlight[],
  members: readonly NodeAddress[],
): Map<NodeAddress, ReplicationTopology> {
  const sources = new Map<NodeAddress, Map<number, NodeAddress>>();
  for (const node of members) sources.set(node, new Map());
  const into = (node: NodeAddress) => {
    let perVb = sources.get(node);
    if (!perVb) {
      perVb = new Map();
      sources.set(node, perVb);
    }
    return perVb;
  };
  map.chains.forEach((chain, vb) => {
    const head = chain[0] ?? null;
    if (head === null) return;
    for (const replica of chain.slice(1)) {
      if (replica !== null && replica !== head) into(replica).set(vb, head);
    }
  });
  for (const copy of copiesInFlight) {
    // A node never consumes a vBucket it is active for (a stale copy record must not turn the active
    // into a replica of another node).
    const head = map.chains[copy.vb]?.[0] ?? null;
    if (copy.target !== copy.source && copy.target !== head) into(copy.target).set(copy.vb, copy.source);
  }
  const topologies = new Map<NodeAddress, ReplicationTopology>();
  for (const [node, perVb] of sources) {
    const bySource: Record<NodeAddress, number[]> = {};
    for (const [vb, source] of [...perVb].sort(([a], [b]) => a - b)) {
      const list = bySource[source] ?? [];
      list.push(vb);
      bySource[source] = list;
    }
    topologies.set(node, bySource);
  }
  return topologies;
}
