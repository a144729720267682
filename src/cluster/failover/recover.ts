import { bumpConfig, holds, type LeaderContext, put, unchangedSince } from '../context.js';
import { type Chain, keys, type NodeRecord, readSnapshot, type VBucketMap } from '../layout.js';
import { clearMarker, requireNode } from '../operation-kit.js';
import {
  ClusterCallError,
  DEFAULT_SETTINGS,
  type NodeAddress,
  type OperationMarker,
  type OperationResult,
} from '../types.js';
import { applyStates, pushTopologies, Reach } from './reach.js';

export interface Readmission {
  readonly map: VBucketMap;
  /** vBuckets where the node became a replica again. */
  readonly replicas: readonly number[];
  /** vBuckets that had no copy left: the node's copy heads them again (its data is all there is). */
  readonly activated: readonly number[];
}

/**
 * The map with a recovered node back in (pure; delta recovery, cluster-notes §1.7 "maps from history"):
 * for each vBucket it held when failed over and whose chain has fewer than R+1 copies, the node is
 * appended as a replica (in the first empty slot); a chain with no copy at all gets the node as its head.
 * vBuckets whose chains are full (a rebalance placed them elsewhere) are left alone: its copy there is
 * stale and is set dead.
 */
export function readmit(
  map: VBucketMap,
  node: NodeAddress,
  held: readonly number[],
  replicas: number,
): Readmission {
  const chains: Chain[] = [...map.chains];
  const added: number[] = [];
  const activated: number[] = [];
  for (const vb of held) {
    const chain = chains[vb];
    if (!chain || chain.includes(node)) continue;
    const copies = chain.filter((n) => n !== null);
    if (copies.length === 0) {
      chains[vb] = [node];
      activated.push(vb);
    } else if (copies.length < replicas + 1) {
      const slot = chain.indexOf(null, 1);
      chains[vb] = slot > 0 ? chain.map((n, i) => (i === slot ? node : n)) : [...chain, node];
      added.push(vb);
    }
  }
  return { map: { vbuckets: map.vbuckets, chains }, replicas: added, activated };
}

/**
 * Recovery from its marker on (also its repair): the node `failed` → `active` and back in the chains of its
 * `held` vBuckets (one txn with a compare on map and node record), its copies set to their place in the map
 * (replica; active where it holds the only copy; dead elsewhere), topologies pushed. Its streams then resume
 * from its own failover log and position (the agent's consumer rolls back where it diverged, dcp-spec §7),
 * so only the missing part is sent.
 */
export async function finishRecover(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<OperationResult> {
  const node = requireNode(marker.args);
  const reach = new Reach(ctx);
  try {
    let readmitted: Readmission | undefined;
    for (let attempt = 1; ; attempt++) {
      const snapshot = await readSnapshot(ctx.store);
      const record = snapshot.nodes.get(node);
      if (record?.state !== 'failed' || !snapshot.map) break;
      const replicas = (snapshot.settings ?? DEFAULT_SETTINGS).replicas;
      readmitted = readmit(snapshot.map, node, record.held ?? [], replicas);
      const active: NodeRecord = {
        state: 'active',
        ...(record.group !== undefined ? { group: record.group } : {}),
      };
      try {
        await ctx.term.txn(
          [
            holds(keys.marker, markerValue),
            unchangedSince(snapshot, keys.map),
            unchangedSince(snapshot, keys.node(node)),
          ],
          [put(keys.node(node), active), put(keys.map, readmitted.map), bumpConfig(snapshot)],
        );
        break;
      } catch (error) {
        if (error instanceof ClusterCallError && error.errorClass === 'not-applied' && attempt < 10) continue;
        throw error;
      }
    }
    ctx.log.info(
      {
        opId: marker.opId,
        node,
        replicas: readmitted?.replicas.length ?? null,
        activated: readmitted?.activated.length ?? null,
      },
      'recover: node back in the map',
    );
    ctx.crash.hit('recover:after-map');

    const snapshot = await readSnapshot(ctx.store);
    const members = [...snapshot.nodes]
      .filter(([, r]) => r.state !== 'failed')
      .map(([a]) => a)
      .sort();
    if (snapshot.map) {
      // the chains the node came back into changed (all of them, for a repair that finds the map written)
      const changed = readmitted
        ? [...readmitted.replicas, ...readmitted.activated]
        : snapshot.map.chains.map((_, vb) => vb);
      await applyStates(ctx, reach, snapshot.map, members, {
        replicas: (snapshot.settings ?? DEFAULT_SETTINGS).replicas,
        chainChanged: new Set(changed),
      });
    }
    ctx.crash.hit('recover:after-states');
    if (snapshot.map) await pushTopologies(ctx, reach, snapshot.map, members);
    const result: OperationResult = {
      opId: marker.opId,
      outcome: 'done',
      detail: {
        node,
        // unknown when a repair found the map already written
        replicas: readmitted ? readmitted.replicas.length : null,
        activated: readmitted ? readmitted.activated.length : null,
      },
    };
    await clearMarker(ctx, markerValue, result);
    ctx.crash.hit('recover:after-clear');
    return result;
  } finally {
    await reach.close();
  }
}
