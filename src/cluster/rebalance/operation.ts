import {
  absent,
  bumpConfig,
  del,
  holds,
  type LeaderContext,
  put,
  putBytes,
  unchangedSince,
} from '../context.js';
import { JanitorMemory, type JanitorReport, runJanitor } from '../janitor.js';
import {
  type ClusterSnapshot,
  decode,
  encode,
  keys,
  readSnapshot,
  type TargetMapRecord,
  type VBucketMap,
} from '../layout.js';
import { type OperationRun, type Progress, permanent, record } from '../operation-kit.js';
import { movesBetween } from '../plan/moves.js';
import { planMap } from '../plan/vbucket-map.js';
import {
  ClusterCallError,
  type NodeAddress,
  type OperationMarker,
  type OperationResult,
  type TopologyOperationRequest,
} from '../types.js';
import { ejectNodes, keepNodes, LAST_TARGET_KEY, type LastTarget, RebalanceRunner } from './runner.js';

/**
 * The rebalance operations (DESIGN.md "Rebalance"): `rebalance` (and `remove-node` once the cluster has
 * settings: a rebalance without the node) writes its marker and the target map in one txn before any
 * move and answers `started`; the moves run in the background of the term (runner.ts) and record the
 * final result under the same op id. `stop-rebalance` stops it within 10 s. Repair on a new leader rolls
 * forward: it resumes toward the stored target.
 */
export const runRebalance: OperationRun = (ctx, snapshot, request, progress) =>
  startRebalance(ctx, snapshot, request, progress, undefined);

/** remove-node on a cluster with settings: a rebalance that ejects the node (its record `leaving`). */
export const runRemoveByRebalance: OperationRun = (ctx, snapshot, request, progress) => {
  if (request.node === undefined) throw permanent('the operation names no node');
  return startRebalance(ctx, snapshot, request, progress, request.node);
};

export const runStopRebalance: OperationRun = async (ctx, _snapshot, request) => {
  const running = ctx.rebalance.current?.opId ?? null;
  const stopped = await stopRunningRebalance(ctx, `stop-rebalance ${request.opId}`);
  return record(ctx, { opId: request.opId, outcome: 'done', detail: { stopped: stopped ? running : null } });
};

/**
 * Stops this term's running rebalance (moves before their takeover abandoned) within 10 s, clears the
 * target map and marker and records its result `refused` (`stopped: <reason>`). False when none ran.
 */
export async function stopRunningRebalance(ctx: LeaderContext, reason: string): Promise<boolean> {
  const running = ctx.rebalance.current;
  if (!running) return false;
  await running.stop(reason);
  return true;
}

/**
 * What an operation meets while this term's rebalance runs (called by runOperation before it repairs a
 * marker): a resend of the op that started it answers `started`; stop-rebalance goes ahead; a failover stops the
 * rebalance first (a dead node beats a rebalance, as ns_server's auto-failover does); anything else is
 * refused until the rebalance ends or is stopped.
 */
export async function rebalanceGate(
  ctx: LeaderContext,
  request: TopologyOperationRequest,
): Promise<OperationResult | undefined> {
  const running = ctx.rebalance.current;
  if (!running) return undefined;
  // a resend of the call that started it (rebalance, or remove-node run as one)
  if (request.opId === running.opId) return { opId: request.opId, outcome: 'started' };
  if (request.kind === 'stop-rebalance') return undefined;
  if (request.kind === 'failover') {
    await stopRunningRebalance(ctx, `failover ${request.opId}`);
    return undefined;
  }
  throw permanent(`rebalance ${running.opId} is running; wait for it or stop-rebalance first`, {
    rebalance: running.opId,
  });
}

/** The nodes a target was planned over, as one comparable string (addresses with their groups). */
export function planSignature(
  nodes: readonly { address: NodeAddress; group?: string }[],
  replicas: number,
): string {
  return JSON.stringify({ replicas, nodes: nodes.map((n) => [n.address, n.group ?? null]) });
}

function previousTarget(
  snapshot: ClusterSnapshot,
  nodes: readonly { address: NodeAddress; group?: string }[],
  replicas: number,
): VBucketMap | undefined {
  const kv = snapshot.entries.get(LAST_TARGET_KEY);
  if (!kv || !snapshot.map) return undefined;
  const last = decode<LastTarget>(kv.value);
  if (last.signature !== planSignature(nodes, replicas) || last.map.vbuckets !== snapshot.map.vbuckets) {
    return undefined;
  }
  const members = new Set(nodes.map((n) => n.address));
  const valid = last.map.chains.every(
    (chain) =>
      chain[0] !== null &&
      chain.every((n) => n !== null && members.has(n)) &&
      new Set(chain).size === chain.length,
  );
  return valid ? last.map : undefined;
}

function janitorProblem(report: JanitorReport): string | undefined {
  if (report.refused.length > 0) {
    return `vBuckets ${report.refused.map((r) => r.vb).join(',')} have several actives`;
  }
  if (report.unreachable.length > 0) {
    return `nodes ${report.unreachable.join(', ')} unreachable (fail them over first)`;
  }
  return undefined;
}

async function startRebalance(
  ctx: LeaderContext,
  first: ClusterSnapshot,
  request: TopologyOperationRequest,
  progress: Progress,
  leaving: NodeAddress | undefined,
): Promise<OperationResult> {
  const { term } = ctx;
  const settings = first.settings;
  if (!settings) throw permanent('the cluster has no settings yet: run cluster init first');
  if (!first.map) throw permanent('the cluster has no vBucket map yet');
  if (leaving !== undefined && !first.nodes.has(leaving))
    return record(ctx, { opId: request.opId, outcome: 'done' });
  // ns_rebalancer runs the janitor first: plan from a map the nodes agree with
  const problem = janitorProblem(await runJanitor(ctx, new JanitorMemory(ctx.janitorMemory?.topologies)));
  if (problem) throw permanent(`cluster not ready for a rebalance: ${problem}`);
  const snapshot = await readSnapshot(ctx.store);
  const map = snapshot.map;
  if (!map) throw permanent('the cluster has no vBucket map yet');
  if (snapshot.marker) {
    throw new ClusterCallError('not-applied', `operation ${snapshot.marker.opId} started meanwhile`);
  }
  const nodes = new Map(snapshot.nodes);
  const leavingRecord = leaving !== undefined ? nodes.get(leaving) : undefined;
  if (leaving !== undefined) {
    if (!leavingRecord) return record(ctx, { opId: request.opId, outcome: 'done' });
    nodes.set(leaving, { ...leavingRecord, state: 'leaving' });
  }
  const keep = keepNodes(nodes);
  const eject = ejectNodes(nodes);
  if (keep.length === 0) throw permanent('no node would be left to hold the vBuckets');
  const planNodes = keep.map((address) => {
    const group = nodes.get(address)?.group;
    return group !== undefined ? { address, group } : { address };
  });
  const planned = planMap({
    nodes: planNodes,
    vbuckets: map.vbuckets,
    replicas: settings.replicas,
    current: map,
  });
  // the target of a stopped rebalance over the same nodes, if it is still nearer: only its unfinished
  // moves are left, where a new plan from a half-moved map may undo finished ones
  const resumable = previousTarget(snapshot, planNodes, settings.replicas);
  const target =
    resumable && movesBetween(map, resumable).length <= movesBetween(map, planned).length
      ? resumable
      : planned;
  const moves = movesBetween(map, target);
  const placing = keep.some((a) => nodes.get(a)?.state === 'added');
  if (moves.length === 0 && eject.length === 0 && !placing) {
    return record(ctx, { opId: request.opId, outcome: 'done', detail: { moves: 0 } });
  }
  const marker: OperationMarker = {
    opId: request.opId,
    kind: 'rebalance',
    args: leaving !== undefined ? { node: leaving, eject: [leaving] } : {},
    epoch: term.epoch,
  };
  const markerValue = encode(marker);
  const targetRecord: TargetMapRecord = { opId: request.opId, map: target, total: moves.length };
  const signature = planSignature(planNodes, settings.replicas);
  const ops = [putBytes(keys.marker, markerValue), put(keys.targetMap, targetRecord), bumpConfig(snapshot)];
  if (leaving !== undefined && leavingRecord) {
    ops.push(put(keys.node(leaving), { ...leavingRecord, state: 'leaving' }));
  }
  await term.txn(
    [absent(keys.marker), unchangedSince(snapshot, keys.map), unchangedSince(snapshot, keys.configRevision)],
    ops,
  );
  progress.markerWritten = true;
  ctx.log.info(
    { opId: request.opId, epoch: term.epoch, moves: moves.length, keep, eject },
    'rebalance: marker and target map written',
  );
  ctx.crash.hit('rebalance:after-marker');
  RebalanceRunner.start(
    ctx,
    { opId: request.opId, markerValue, target: targetRecord, movesPerNode: settings.movesPerNode, signature },
    snapshot,
  );
  return { opId: request.opId, outcome: 'started', detail: { moves: moves.length } };
}

/**
 * Repair of a rebalance marker on a new leader: roll forward. The janitor first fixes the map from what
 * the nodes hold, with the target for its adopt-target rule (a takeover that finished before its chain
 * was stored); then the rebalance resumes in the background toward the stored target. A marker with no
 * target to resume is cleared with a `refused` result.
 */
export async function repairRebalance(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
): Promise<void> {
  // this term's own rebalance holds the marker: nothing to repair
  if (ctx.rebalance.current) return;
  const markerKv = snapshot.entries.get(keys.marker);
  if (!markerKv) return;
  const target = snapshot.target;
  if (marker.kind !== 'rebalance' || !target || target.opId !== marker.opId || !snapshot.settings) {
    await ctx.term.txn(
      [holds(keys.marker, markerKv.value)],
      [
        del(keys.marker),
        del(keys.targetMap),
        put(keys.result(marker.opId), {
          opId: marker.opId,
          outcome: 'refused',
          reason: 'interrupted with nothing to resume',
        } satisfies OperationResult),
      ],
    );
    return;
  }
  await runJanitor(ctx, new JanitorMemory(ctx.janitorMemory?.topologies), { repairMarker: false });
  const fresh = await readSnapshot(ctx.store);
  const freshMarker = fresh.entries.get(keys.marker);
  if (!freshMarker || !sameValue(freshMarker.value, markerKv.value)) return;
  ctx.log.warn(
    { opId: marker.opId, markerEpoch: marker.epoch },
    'rebalance: resuming toward the stored target',
  );
  RebalanceRunner.start(
    ctx,
    {
      opId: marker.opId,
      markerValue: markerKv.value,
      target,
      movesPerNode: snapshot.settings.movesPerNode,
      signature: lastSignature(fresh),
    },
    fresh,
  );
}

/** The resumed rebalance's plan signature: the nodes it would be planned over now. */
function lastSignature(snapshot: ClusterSnapshot): string {
  const keep = keepNodes(snapshot.nodes).map((address) => {
    const group = snapshot.nodes.get(address)?.group;
    return group !== undefined ? { address, group } : { address };
  });
  return planSignature(keep, snapshot.settings?.replicas ?? 0);
}

function sameValue(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
