import { absent, type LeaderContext, putBytes, unchangedSince } from '../context.js';
import { type ClusterSnapshot, encode, keys } from '../layout.js';
import { NodeUnreachableError } from '../node-gateway.js';
import { markerOf, type OperationRun, permanent, record, requireNode } from '../operation-kit.js';
import type { OperationMarker, TopologyOperationRequest } from '../types.js';
import { finishGracefulFailover, gracefulRefusal } from './graceful.js';
import { failoverRefusal, finishHardFailover } from './hard.js';
import { finishRecover } from './recover.js';

/**
 * `failover` (DESIGN.md "Failover"): refusals first (permanent, nothing written), then txn 1 = the marker
 * alone (compare: the node record unchanged since the snapshot), then the hard or graceful run from the
 * marker on, which is also what a later leader's repair runs (rolled forward).
 */
export const runFailover: OperationRun = async (ctx, snapshot, request, progress) => {
  const node = requireNode(request);
  const auto = request.auto === true;
  const member = snapshot.nodes.get(node);
  if (member?.state === 'failed') {
    return record(ctx, { opId: request.opId, outcome: 'done', detail: { node, alreadyFailed: true } });
  }
  const refusal = failoverRefusal(snapshot, node, auto);
  if (refusal) throw permanent(refusal.message, { node, reason: refusal.reason });
  if (request.hard !== true) {
    const reason = await gracefulRefusal(ctx, snapshot, node);
    if (reason) throw permanent(reason, { node, reason: 'graceful' });
  }
  const { marker, markerValue } = await writeMarker(ctx, snapshot, request);
  progress.markerWritten = true;
  ctx.log.info(
    { opId: request.opId, node, hard: request.hard === true, auto, epoch: ctx.term.epoch },
    'failover: marker written',
  );
  ctx.crash.hit('failover:after-marker');
  return request.hard === true
    ? finishHardFailover(ctx, marker, markerValue)
    : finishGracefulFailover(ctx, marker, markerValue);
};

export async function repairFailover(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
): Promise<void> {
  const markerValue = snapshot.entries.get(keys.marker)?.value ?? encode(marker);
  if (marker.args.hard === true) await finishHardFailover(ctx, marker, markerValue);
  else await finishGracefulFailover(ctx, marker, markerValue);
}

/**
 * `recover` (DESIGN.md "Failover"): a failed node that answers comes back (its data kept, caught up from
 * its position); a node not failed is done at once; a node not a member, or one that does not answer, is
 * refused.
 */
export const runRecover: OperationRun = async (ctx, snapshot, request, progress) => {
  const node = requireNode(request);
  const member = snapshot.nodes.get(node);
  if (!member) throw permanent(`${node} is not a member of the cluster`, { node, reason: 'not-a-member' });
  if (member.state !== 'failed') {
    return record(ctx, { opId: request.opId, outcome: 'done', detail: { node, alreadyMember: true } });
  }
  try {
    const session = await ctx.term.onNode(() => ctx.gateway.open(node));
    try {
      const vbuckets = await ctx.term.onNode(() => session.vbucketCount());
      if (snapshot.map && vbuckets !== snapshot.map.vbuckets) {
        throw permanent(`node ${node} has ${vbuckets} vBuckets, the cluster ${snapshot.map.vbuckets}`, {
          node,
        });
      }
    } finally {
      await session.close();
    }
  } catch (error) {
    if (error instanceof NodeUnreachableError)
      throw permanent(error.message, { node, reason: 'unreachable' });
    throw error;
  }
  const { marker, markerValue } = await writeMarker(ctx, snapshot, request);
  progress.markerWritten = true;
  ctx.log.info({ opId: request.opId, node, epoch: ctx.term.epoch }, 'recover: marker written');
  ctx.crash.hit('recover:after-marker');
  return finishRecover(ctx, marker, markerValue);
};

export async function repairRecover(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
): Promise<void> {
  await finishRecover(ctx, marker, snapshot.entries.get(keys.marker)?.value ?? encode(marker));
}

/** Txn 1: the marker, with a compare that the node record is as the refusal checks saw it. */
async function writeMarker(ctx: LeaderContext, snapshot: ClusterSnapshot, request: TopologyOperationRequest) {
  const marker = markerOf(request, ctx.term.epoch);
  const markerValue = encode(marker);
  await ctx.term.txn(
    [absent(keys.marker), unchangedSince(snapshot, keys.node(requireNode(request)))],
    [putBytes(keys.marker, markerValue)],
  );
  return { marker, markerValue };
}
