import type { Chain, VBucketMap } from '../layout.js';
import type { PlanInput } from './index.js';

// PLACEHOLDER (replaced by the real planner, issue 12 item 1): round-robin chains, ignores `current` and groups.
export function planMap(input: PlanInput): VBucketMap {
  const nodes = input.nodes.map((n) => n.address);
  const copies = Math.min(input.replicas + 1, nodes.length);
  const chains: Chain[] = [];
  for (let vb = 0; vb < input.vbuckets; vb++) {
    if (nodes.length === 0) {
      chains.push([null]);
      continue;
    }
    chains.push(Array.from({ length: copies }, (_, i) => nodes[(vb + i) % nodes.length] ?? null));
  }
  return { vbuckets: input.vbuckets, chains };
}
