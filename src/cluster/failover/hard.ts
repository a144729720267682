import { bumpConfig, holds, type LeaderContext, put, unchangedSince } from '../context.js';
import { type ClusterSnapshot, keys, type NodeRecord, readSnapshot } from '../layout.js';
import { clearMarker, permanent, requireNode } from '../operation-kit.js';
import {
  ClusterCallError,
  DEFAULT_SETTINGS,
  type NodeAddress,
  type OperationMarker,
  type OperationResult,
} from '../types.js';
import { copiesLost, type Promotion, promoteSurvivors, shownVbuckets, stoppedMap } from './promote.js';
import { applyStates, pushTopologies, Reach, readInfo } from './reach.js';

/** The members a failover leaves: every node not failed, except `node`. */
export function survivorsOf(snapshot: ClusterSnapshot, node: NodeAddress): NodeAddress[] {
  return [...snapshot.nodes]
    .filter(([address, record]) => address !== node && record.state !== 'failed')
    .map(([address]) => address)
    .sort();
}

/**
 * Why failing over `node` is refused now (permanent, not recorded: a retry once the cause is gone can
 * succeed), or undefined. Refused for every failover: a node that is not a member, the last member. Refused
 * for an automatic one (cluster-notes §1.9 `validate_kv`, max count): a vBucket that would lose its last
 * copy, the count used up.
 */
export function failoverRefusal(
  snapshot: ClusterSnapshot,
  node: NodeAddress,
  auto: boolean,
): { reason: FailoverRefusal; message: string } | undefined {
  if (!snapshot.nodes.has(node)) {
    return { reason: 'not-a-member', message: `${node} is not a member of the cluster` };
  }
  if (survivorsOf(snapshot, node).length === 0) {
    return {
      reason: 'last-node',
      message: `${node} is the last node of the cluster; failing it over would leave none`,
    };
  }
  if (!auto) return undefined;
  const settings = snapshot.settings ?? DEFAULT_SETTINGS;
  if (snapshot.autoFailoverCount >= settings.autoFailoverMax) {
    return {
      reason: 'max-count',
      message: `automatic failovers used up (${snapshot.autoFailoverCount} of ${settings.autoFailoverMax}); reset the count`,
    };
  }
  const lost = snapshot.map ? copiesLost(snapshot.map, new Set([node])) : [];
  if (lost.length > 0) {
    return {
      reason: 'last-copy',
      message: `failing over ${node} would leave vBuckets ${shownVbuckets(lost)} with no copy`,
    };
  }
  return undefined;
}

export type FailoverRefusal = 'not-a-member' | 'last-node' | 'max-count' | 'last-copy';

/** Attempts of the map txn before giving up (ns_server retries its failover txn up to 10 times). */
const MAP_TXN_ATTEMPTS = 10;

/**
 * A hard failover from its marker on (also its roll-forward repair; every step is idempotent):
 * 1. replication to and from the node stops: survivors get topologies without it (chains it headed have no
 *    source, so their replicas' seqnos stand still), the node, if it answers, an empty one and its actives
 *    set dead (never two actives);
 * 2. the survivors' seqnos are read; per vBucket the survivor with the highest high prepared seqno (then
 *    high seqno) heads the chain;
 * 3. one guarded txn on a fresh snapshot (map, node record and count unchanged since the read; safety
 *    re-checked) writes the map, the node `failed` with `held`, and for an automatic failover the count;
 * 4. new heads are set active (a new failover-log entry), the rest of each chain replica; the head of every
 *    chain that named the node gets its new durability topology (DESIGN.md Part 3);
 * 5. topologies pushed (replicas follow the new heads); the marker cleared with the result recorded.
 */
export async function finishHardFailover(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<OperationResult> {
  const { crash, log } = ctx;
  const node = requireNode(marker.args);
  const auto = marker.args.auto === true;
  const reach = new Reach(ctx);
  try {
    let snapshot = await readSnapshot(ctx.store);
    const record = snapshot.nodes.get(node);
    let promoted: readonly Promotion[] | null = null;
    if (!record) {
      // removed meanwhile: nothing is left to fail over
      const result: OperationResult = {
        opId: marker.opId,
        outcome: 'refused',
        reason: `${node} is not a member of the cluster`,
      };
      await clearMarker(ctx, markerValue, result);
      return result;
    }
    if (record.state !== 'failed') {
      await stopReplication(ctx, reach, snapshot, node);
      crash.hit('failover:after-stop-replication');
      promoted = await commitFailover(ctx, reach, marker, markerValue);
      crash.hit('failover:after-map');
    }
    snapshot = await readSnapshot(ctx.store);
    const map = snapshot.map;
    const survivors = survivorsOf(snapshot, node);
    if (map) {
      // every chain that named the node changed: their heads get the new topology
      const changes = await applyStates(ctx, reach, map, survivors, {
        replicas: (snapshot.settings ?? DEFAULT_SETTINGS).replicas,
        chainChanged: new Set(snapshot.nodes.get(node)?.held ?? []),
      });
      log.info({ opId: marker.opId, node, changes }, 'failover: survivors set to the new map');
    }
    crash.hit('failover:after-promote');
    if (map) await pushTopologies(ctx, reach, map, survivors, [node]);
    crash.hit('failover:after-topology');

    const held = snapshot.nodes.get(node)?.held ?? [];
    const lost = map ? held.filter((vb) => (map.chains[vb]?.[0] ?? null) === null) : [];
    const result: OperationResult = {
      opId: marker.opId,
      outcome: 'done',
      detail: {
        node,
        hard: marker.args.hard === true,
        auto,
        // unknown when a repair found the map already written
        promoted: promoted ? promoted.length : null,
        lost: lost.length,
        lostVbuckets: shownVbuckets(lost),
      },
    };
    await clearMarker(ctx, markerValue, result);
    crash.hit('failover:after-clear');
    return result;
  } finally {
    await reach.close();
  }
}

/** Step 1: nothing streams to or from the node; chains it headed stop streaming; its actives set dead. */
async function stopReplication(
  ctx: LeaderContext,
  reach: Reach,
  snapshot: ClusterSnapshot,
  node: NodeAddress,
): Promise<void> {
  await reach.on(node, 'demote', async (s) => {
    const states = await s.vbucketStates();
    for (let vb = 0; vb < states.length; vb++) {
      if (states[vb] === 'active') await s.setVBucketState(vb, 'dead', ctx.term.epoch);
    }
  });
  if (snapshot.map) {
    await pushTopologies(ctx, reach, stoppedMap(snapshot.map, new Set([node])), survivorsOf(snapshot, node), [
      node,
    ]);
  }
  ctx.log.info(
    { node, reachable: !reach.unreachable.has(node) },
    'failover: replication to and from the node stopped',
  );
}

/** Steps 2-3: seqnos, promotion, and the one guarded txn, redone from a fresh read when metadata moved. */
async function commitFailover(
  ctx: LeaderContext,
  reach: Reach,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<readonly Promotion[]> {
  const node = requireNode(marker.args);
  const auto = marker.args.auto === true;
  for (let attempt = 1; ; attempt++) {
    const before = await readSnapshot(ctx.store);
    const infos = await readInfo(reach, survivorsOf(before, node));
    // the snapshot the txn compares against is read after the seqnos
    const snapshot = await readSnapshot(ctx.store);
    const record = snapshot.nodes.get(node) as NodeRecord;
    const refusal = failoverRefusal(snapshot, node, auto);
    if (refusal && refusal.reason !== 'max-count') {
      // (the count is checked before the marker; a repair finishes what was decided then)
      await clearMarker(ctx, markerValue, undefined);
      throw permanent(refusal.message, { node, reason: refusal.reason });
    }
    const map = snapshot.map;
    const seqnos = new Map([...infos].map(([n, info]) => [n, info.map((i) => i.highSeqno)]));
    const preparedSeqnos = new Map([...infos].map(([n, info]) => [n, info.map((i) => i.highPreparedSeqno)]));
    const promotion = map
      ? promoteSurvivors({ map, failed: new Set([node]), seqnos, preparedSeqnos })
      : undefined;
    const held = map ? map.chains.flatMap((chain, vb) => (chain.includes(node) ? [vb] : [])) : [];
    const failed: NodeRecord = {
      state: 'failed',
      ...(record.group !== undefined ? { group: record.group } : {}),
      held,
    };
    const ops = [put(keys.node(node), failed), bumpConfig(snapshot)];
    if (promotion) ops.push(put(keys.map, promotion.map));
    if (auto) ops.push(put(keys.autoFailover, { count: snapshot.autoFailoverCount + 1 }));
    try {
      await ctx.term.txn(
        [
          holds(keys.marker, markerValue),
          unchangedSince(snapshot, keys.map),
          unchangedSince(snapshot, keys.node(node)),
          unchangedSince(snapshot, keys.autoFailover),
        ],
        ops,
      );
    } catch (error) {
      if (
        error instanceof ClusterCallError &&
        error.errorClass === 'not-applied' &&
        attempt < MAP_TXN_ATTEMPTS
      ) {
        ctx.log.info({ node, attempt }, 'failover: metadata changed since the read; reading again');
        continue;
      }
      throw error;
    }
    const lost = promotion?.lost ?? [];
    ctx.log.warn(
      {
        opId: marker.opId,
        node,
        auto,
        promoted: promotion?.promoted.length ?? 0,
        lost: lost.length,
        configRevision: snapshot.configRevision + 1,
      },
      'failover: map and node committed',
    );
    if (lost.length > 0) {
      ctx.log.error(
        { node, vbuckets: lost },
        `failover: data has been lost for ${lost.length} of ${map?.vbuckets ?? 0} vBuckets (no surviving copy)`,
      );
    }
    return promotion?.promoted ?? [];
  }
}
