import { bumpConfig, holds, type LeaderContext, put, unchangedSince } from '../context.js';
import { type ClusterSnapshot, keys, readSnapshot } from '../layout.js';
import { NodeTakeoverError, NodeUnreachableError } from '../node-gateway.js';
import { clearMarker, permanent, requireNode } from '../operation-kit.js';
import { durabilityTopology } from '../plan/durability-topology.js';
import {
  ClusterCallError,
  DEFAULT_SETTINGS,
  type NodeAddress,
  type OperationMarker,
  type OperationResult,
} from '../types.js';
import { finishHardFailover, survivorsOf } from './hard.js';
import { gracefulChain, shownVbuckets } from './promote.js';
import { ConfigPushes, Reach, readInfo } from './reach.js';

/** Takeovers in flight at once (each is a DCP takeover stream between two nodes). */
export const GRACEFUL_PARALLELISM = 4;
/** The deadline a node's agent gets for one takeover (its retry protocol runs within it). */
export const TAKEOVER_DEADLINE_MS = 10_000;

/** The vBuckets `node` heads that no other member could take over (a graceful failover would lose them). */
export function withoutReplica(snapshot: ClusterSnapshot, node: NodeAddress): number[] {
  const survivors = new Set(survivorsOf(snapshot, node));
  const stranded: number[] = [];
  snapshot.map?.chains.forEach((chain, vb) => {
    if (chain[0] === node && !chain.some((n) => n !== null && survivors.has(n))) stranded.push(vb);
  });
  return stranded;
}

/**
 * Why a graceful failover of `node` cannot start (beyond the refusals of every failover): the node must
 * answer (its actives are taken over from it), and every vBucket it heads needs a replica on another member.
 */
export async function gracefulRefusal(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  node: NodeAddress,
): Promise<string | undefined> {
  const stranded = withoutReplica(snapshot, node);
  if (stranded.length > 0) {
    return `vBuckets ${shownVbuckets(stranded)} have no replica to take them over from ${node}; a graceful failover would lose them`;
  }
  try {
    const session = await ctx.term.onNode(() => ctx.gateway.open(node));
    try {
      await ctx.term.onNode(() => session.vbucketCount());
    } finally {
      await session.close();
    }
  } catch (error) {
    if (!(error instanceof NodeUnreachableError)) throw error;
    return `${error.message}; a graceful failover needs the node (fail it over hard instead)`;
  }
  return undefined;
}

/**
 * A graceful failover from its marker on (also its repair): each vBucket the node heads is taken over by
 * its first replica that answers (the node's agent runs the DCP takeover with the retry protocol), at most
 * GRACEFUL_PARALLELISM at once, and the map is updated per vBucket with a compare on the map; then the node
 * leaves as in a hard failover (with nothing left to promote). A takeover that fails stops the failover
 * (marker cleared, nothing recorded: permanent, so a retry can run it again). A node that stopped answering
 * is failed over hard (promotion by seqno).
 */
export async function finishGracefulFailover(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<OperationResult> {
  const node = requireNode(marker.args);
  const reach = new Reach(ctx);
  try {
    const snapshot = await readSnapshot(ctx.store);
    if (snapshot.map && snapshot.nodes.get(node)?.state !== 'failed') {
      const alive = await reach.on(node, 'probe', (s) => s.vbucketCount());
      if (alive === undefined) {
        ctx.log.warn(
          { opId: marker.opId, node },
          'graceful failover: the node stopped answering; failing it over hard',
        );
      } else {
        await takeOverActives(ctx, reach, snapshot, marker, markerValue);
      }
    }
  } finally {
    await reach.close();
  }
  return finishHardFailover(ctx, marker, markerValue);
}

async function takeOverActives(
  ctx: LeaderContext,
  reach: Reach,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<void> {
  const node = requireNode(marker.args);
  const map = snapshot.map;
  if (!map) return;
  const survivors = new Set(survivorsOf(snapshot, node));
  const replicas = (snapshot.settings ?? DEFAULT_SETTINGS).replicas;
  const todo = map.chains.flatMap((chain, vb) => (chain[0] === node ? [vb] : []));
  const infos = await readInfo(reach, [node, ...survivors]);
  let failure: Error | undefined;
  let mapUpdates: Promise<unknown> = Promise.resolve();
  let taken = 0;
  const configs = new ConfigPushes(ctx, reach, [node, ...survivors]);

  const takeOne = async (vb: number) => {
    const chain = map.chains[vb] ?? [null];
    const candidates = chain.filter((n): n is NodeAddress => n !== null && survivors.has(n));
    // a takeover that finished before a crash: a replica is active and the node's copy is not
    let to = candidates.find(
      (c) => infos.get(c)?.[vb]?.state === 'active' && infos.get(node)?.[vb]?.state !== 'active',
    );
    for (const candidate of to ? [] : candidates) {
      try {
        const outcome = await reach.on(candidate, 'takeover', (s) =>
          s.takeover(vb, node, ctx.term.epoch, { deadlineMs: TAKEOVER_DEADLINE_MS }),
        );
        if (outcome) {
          ctx.log.info(
            { vb, from: node, to: candidate, ...outcome },
            'graceful failover: vBucket taken over',
          );
          to = candidate;
          break;
        }
      } catch (error) {
        if (!(error instanceof NodeTakeoverError)) throw error;
        // an unsettled outcome: the states tell whether the takeover happened after all
        const settledHere =
          !error.settled && (await tookOver(reach, vb, node, candidate)) ? candidate : undefined;
        if (!settledHere) {
          failure = error;
          return;
        }
        to = settledHere;
        break;
      }
    }
    if (!to) {
      failure = new Error(`no replica of vb ${vb} answered (${candidates.join(', ') || 'none'})`);
      return;
    }
    const newHead = to;
    // map updates one at a time: each compares the map it read
    const update = mapUpdates.then(() => updateChain(ctx, marker, markerValue, vb, newHead));
    mapUpdates = update.catch(() => undefined);
    await update;
    configs.changed();
    // the new head took over without a topology: its chain without the leaving node (which streams no more)
    const topology = durabilityTopology(gracefulChain(chain, node, newHead), replicas, new Set([node]));
    await reach.on(newHead, 'set topology', (s) => s.setVBucketState(vb, 'active', ctx.term.epoch, topology));
    taken++;
    ctx.crash.hit('failover:after-takeover');
  };

  const queue = [...todo];
  await Promise.all(
    Array.from({ length: Math.min(GRACEFUL_PARALLELISM, queue.length) }, async () => {
      for (let vb = queue.shift(); vb !== undefined && !failure; vb = queue.shift()) await takeOne(vb);
    }),
  );
  await configs.settled();
  if (failure) {
    await clearMarker(ctx, markerValue, undefined);
    throw permanent(
      `graceful failover of ${node} stopped after ${taken} of ${todo.length} takeovers: ${failure.message}; ` +
        'the vBuckets taken over stay moved; retry, or fail the node over hard',
      { node },
    );
  }
}

/** Whether `to` is active for `vb` and `from` no longer is (read from both nodes). */
async function tookOver(reach: Reach, vb: number, from: NodeAddress, to: NodeAddress): Promise<boolean> {
  const infos = await readInfo(reach, [from, to]);
  return infos.get(to)?.[vb]?.state === 'active' && infos.get(from)?.[vb]?.state !== 'active';
}

/** The chain of `vb` after `to` took it over from the leaving node, stored with a compare on the map. */
async function updateChain(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
  vb: number,
  to: NodeAddress,
): Promise<void> {
  const node = requireNode(marker.args);
  for (let attempt = 1; ; attempt++) {
    const snapshot = await readSnapshot(ctx.store);
    const map = snapshot.map;
    const chain = map?.chains[vb];
    if (!map || !chain || chain[0] !== node) return;
    const chains = [...map.chains];
    chains[vb] = gracefulChain(chain, node, to);
    try {
      await ctx.term.txn(
        [holds(keys.marker, markerValue), unchangedSince(snapshot, keys.map)],
        [put(keys.map, { vbuckets: map.vbuckets, chains }), bumpConfig(snapshot)],
      );
      return;
    } catch (error) {
      if (error instanceof ClusterCallError && error.errorClass === 'not-applied' && attempt < 10) continue;
      throw error;
    }
  }
}
