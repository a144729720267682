import { absent, bumpConfig, del, holds, type LeaderContext, put, putBytes } from './context.js';
import { repairFailover, repairRecover, runFailover, runRecover } from './failover/operation.js';
import { repairInit, runInit } from './init.js';
import {
  type Chain,
  type ClusterSnapshot,
  emptyMap,
  encode,
  keys,
  type NodeRecord,
  nodeConfig,
  readResult,
  readSnapshot,
  sameMap,
  trimNulls,
  type VBucketMap,
  withoutNode,
} from './layout.js';
import { type NodeSession, NodeUnreachableError } from './node-gateway.js';
import {
  clearMarker,
  markerOf,
  type OperationRepair,
  type OperationRun,
  type Progress,
  permanent,
  record,
  requireNode,
  stopsActing,
} from './operation-kit.js';
import {
  rebalanceGate,
  repairRebalance,
  runRebalance,
  runRemoveByRebalance,
  runStopRebalance,
} from './rebalance/operation.js';
import { repairDirection } from './repair.js';
import type { ObservedState } from './sanify.js';
import { repairSettings, runSettings } from './settings.js';
import {
  ClusterCallError,
  type NodeAddress,
  type OperationMarker,
  type OperationResult,
  type TopologyOperationKind,
  type TopologyOperationRequest,
} from './types.js';

/**
 * The map after `node` joins holding `states`: where the map has no active, the node's active copy
 * becomes the chain head; a replica copy the chain does not name yet is appended. A cluster formed from
 * nodes that already hold data so gets a map without moving anything.
 */
export function adoptCopies(
  map: VBucketMap,
  node: NodeAddress,
  states: readonly ObservedState[],
): VBucketMap {
  const chains = map.chains.map((chain, vb): Chain => {
    const state = states[vb];
    if (state === 'active' && (chain[0] ?? null) === null) {
      return trimNulls([node, ...chain.slice(1).filter((n) => n !== node)]);
    }
    if (state === 'replica' && !chain.includes(node)) return [...chain, node];
    return chain;
  });
  return { vbuckets: map.vbuckets, chains };
}

/** The vBuckets whose only copy in the map is on `node` (removing it would leave them without a copy). */
export function soleCopies(map: VBucketMap | undefined, node: NodeAddress): number[] {
  if (!map) return [];
  const sole: number[] = [];
  map.chains.forEach((chain, vb) => {
    if (chain.includes(node) && chain.every((n) => n === null || n === node)) sole.push(vb);
  });
  return sole;
}

/**
 * Runs one topology operation on the leader: a repeated op id answers the first result; an unfinished
 * operation of another id is repaired first; then the operation runs, marker first.
 */
export async function runOperation(
  ctx: LeaderContext,
  request: TopologyOperationRequest,
): Promise<OperationResult> {
  const prior = await readResult(ctx.store, request.opId);
  if (prior) return prior;
  // this term's background rebalance decides what may run beside it
  const gated = await rebalanceGate(ctx, request);
  if (gated) return gated;
  let snapshot = await readSnapshot(ctx.store);
  if (snapshot.marker) {
    // the same op id too: its earlier run was interrupted, so repair it and run it afresh (a rolled-forward
    // one then answers its recorded result)
    await repairMarker(ctx, snapshot);
    const repaired = await readResult(ctx.store, request.opId);
    if (repaired) return repaired;
    // a rebalance the repair resumed runs beside this operation from now on
    const regated = await rebalanceGate(ctx, request);
    if (regated) return regated;
    snapshot = await readSnapshot(ctx.store);
  }
  const progress = { markerWritten: false };
  try {
    return await dispatch(ctx, snapshot, request, progress);
  } catch (error) {
    // fenced before the marker: nothing of this operation was written
    if (!progress.markerWritten && error instanceof ClusterCallError && error.errorClass === 'fenced') {
      throw new ClusterCallError('not-applied', error.message, error.context, { cause: error });
    }
    throw error;
  }
}

// a function, not a table built at load: the kinds' modules import operation-kit, and a table here would
// read their exports before an import cycle finished loading them
function runOf(kind: TopologyOperationKind): OperationRun {
  const RUNS: Readonly<Record<TopologyOperationKind, OperationRun>> = {
    'add-node': addNode,
    'remove-node': removeNode,
    init: runInit,
    rebalance: runRebalance,
    'stop-rebalance': runStopRebalance,
    failover: runFailover,
    recover: runRecover,
    settings: runSettings,
  };
  return RUNS[kind];
}

function dispatch(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  request: TopologyOperationRequest,
  progress: Progress,
): Promise<OperationResult> {
  return runOf(request.kind)(ctx, snapshot, request, progress);
}

async function addNode(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  request: TopologyOperationRequest,
  progress: Progress,
): Promise<OperationResult> {
  const { term, crash } = ctx;
  const node = requireNode(request);
  if (snapshot.nodes.has(node)) return record(ctx, { opId: request.opId, outcome: 'done' });
  let session: NodeSession;
  try {
    session = await term.onNode(() => ctx.gateway.open(node));
  } catch (error) {
    if (error instanceof NodeUnreachableError) throw permanent(error.message, { node });
    throw error;
  }
  const marker = markerOf(request, term.epoch);
  const markerValue = encode(marker);
  try {
    const vbuckets = await term.onNode(() => session.vbucketCount());
    if (snapshot.map && snapshot.map.vbuckets !== vbuckets) {
      throw permanent(`node ${node} has ${vbuckets} vBuckets, the cluster ${snapshot.map.vbuckets}`, {
        node,
      });
    }
    const joining: NodeRecord = {
      state: 'joining',
      ...(request.group !== undefined ? { group: request.group } : {}),
    };
    await term.txn(
      [absent(keys.marker), absent(keys.node(node))],
      [putBytes(keys.marker, markerValue), put(keys.node(node), joining), bumpConfig(snapshot)],
    );
    progress.markerWritten = true;
    ctx.log.info({ opId: request.opId, node, epoch: term.epoch }, 'add-node: marker written');
    crash.hit('add-node:after-marker');

    const withJoining = await readSnapshot(ctx.store);
    await term.onNode(() => session.setClusterConfig(nodeConfig(withJoining, term.epoch)));
    crash.hit('add-node:after-node-config');

    const states = await term.onNode(() => session.vbucketStates());
    const map = adoptCopies(withJoining.map ?? emptyMap(vbuckets), node, states);
    await term.txn(
      [holds(keys.marker, markerValue)],
      [put(keys.node(node), { ...joining, state: 'added' }), put(keys.map, map), bumpConfig(withJoining)],
    );
    ctx.log.info({ opId: request.opId, node }, 'add-node: node added, map adopted its copies');
    crash.hit('add-node:after-map');

    const result: OperationResult = { opId: request.opId, outcome: 'done' };
    await clearMarker(ctx, markerValue, result);
    crash.hit('add-node:after-clear');
    return result;
  } catch (error) {
    if (progress.markerWritten && !stopsActing(error)) {
      ctx.log.warn({ opId: request.opId, node, err: String(error) }, 'add-node failed: rolling it back');
      await repairMarker(ctx, await readSnapshot(ctx.store));
      if (error instanceof NodeUnreachableError) throw permanent(error.message, { node });
    }
    throw error;
  } finally {
    await session.close();
  }
}

async function removeNode(
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  request: TopologyOperationRequest,
  progress: Progress,
): Promise<OperationResult> {
  const { term } = ctx;
  const node = requireNode(request);
  const member = snapshot.nodes.get(node);
  if (!member) return record(ctx, { opId: request.opId, outcome: 'done' });
  // an initialised cluster moves the node's copies elsewhere first: a rebalance without it
  if (snapshot.settings) return runRemoveByRebalance(ctx, snapshot, request, progress);
  const sole = soleCopies(snapshot.map, node);
  if (sole.length > 0) {
    const shown = sole.slice(0, 8).join(',') + (sole.length > 8 ? `,... (${sole.length})` : '');
    throw permanent(`removing ${node} would leave vBuckets ${shown} with no copy`, { node, vbuckets: sole });
  }
  const marker = markerOf(request, term.epoch);
  const markerValue = encode(marker);
  await term.txn(
    [absent(keys.marker), { key: keys.node(node), target: 'version', op: '>', revision: 0 }],
    [
      putBytes(keys.marker, markerValue),
      put(keys.node(node), { ...member, state: 'leaving' }),
      bumpConfig(snapshot),
    ],
  );
  progress.markerWritten = true;
  ctx.log.info({ opId: request.opId, node, epoch: term.epoch }, 'remove-node: marker written');
  ctx.crash.hit('remove-node:after-marker');
  return finishRemove(ctx, marker, markerValue);
}

/**
 * The rest of remove-node, from the marker on: also its roll-forward repair, so every step is idempotent.
 * An unreachable leaving node is removed from the metadata anyway (its copies are then not the map's).
 */
async function finishRemove(
  ctx: LeaderContext,
  marker: OperationMarker,
  markerValue: Uint8Array,
): Promise<OperationResult> {
  const { term, crash } = ctx;
  const node = requireNode(marker.args);
  const snapshot = await readSnapshot(ctx.store);
  let session: NodeSession | undefined;
  try {
    session = await term.onNode(() => ctx.gateway.open(node));
  } catch (error) {
    if (!(error instanceof NodeUnreachableError)) throw error;
    ctx.log.warn(
      { node, err: error.message },
      'remove-node: node unreachable; removing it from the metadata only',
    );
  }
  try {
    if (session) {
      const s = session;
      await term.onNode(() => s.setClusterConfig(nodeConfig(snapshot, term.epoch)));
      crash.hit('remove-node:after-node-config');
      const states = await term.onNode(() => s.vbucketStates());
      for (let vb = 0; vb < states.length; vb++) {
        const state = states[vb];
        if (state === undefined || state === 'dead') continue;
        await term.onNode(() => s.setVBucketState(vb, 'dead', term.epoch));
      }
      crash.hit('remove-node:after-dead');
    }
  } catch (error) {
    if (stopsActing(error) || !(error instanceof NodeUnreachableError)) throw error;
    ctx.log.warn(
      { node, err: error.message },
      'remove-node: node stopped answering; removing it from the metadata only',
    );
  } finally {
    await session?.close();
  }
  const map = snapshot.map ? withoutNode(snapshot.map, node) : undefined;
  const ops = [del(keys.node(node)), bumpConfig(snapshot)];
  if (map && !sameMap(map, snapshot.map)) ops.push(put(keys.map, map));
  await term.txn([holds(keys.marker, markerValue)], ops);
  ctx.log.info({ opId: marker.opId, node }, 'remove-node: node out of nodes and map');
  crash.hit('remove-node:after-map');

  const result: OperationResult = { opId: marker.opId, outcome: 'done' };
  await clearMarker(ctx, markerValue, result);
  crash.hit('remove-node:after-clear');
  return result;
}

/**
 * Repairs the unfinished operation in `snapshot` (repair.ts): add-node rolled back in one txn (node out of
 * nodes and map, marker cleared, no result recorded), anything else rolled forward.
 */
export async function repairMarker(ctx: LeaderContext, snapshot: ClusterSnapshot): Promise<void> {
  const marker = snapshot.marker;
  const markerKv = snapshot.entries.get(keys.marker);
  if (!marker || !markerKv) return;
  const direction = repairDirection(marker.kind);
  ctx.log.warn(
    { opId: marker.opId, kind: marker.kind, node: marker.args.node, markerEpoch: marker.epoch, direction },
    'repairing an unfinished operation',
  );
  if (marker.kind !== 'add-node' && marker.kind !== 'remove-node') {
    await repairOther(ctx, snapshot, marker);
  } else if (direction === 'rollback') {
    const node = requireNode(marker.args);
    const ops = [del(keys.node(node)), del(keys.marker), bumpConfig(snapshot)];
    const map = snapshot.map ? withoutNode(snapshot.map, node) : undefined;
    if (map && !sameMap(map, snapshot.map)) ops.push(put(keys.map, map));
    await ctx.term.txn([holds(keys.marker, markerKv.value)], ops);
  } else {
    await finishRemove(ctx, marker, markerKv.value);
  }
  ctx.metrics.repairs.inc({ kind: `${direction}-${marker.kind}` });
}

/**
 * Repair of the part-2 kinds: each module owns its rule (DESIGN.md "Repair per kind"); a repair finishes
 * (or, where the module says so, rolls back) what the marker names and clears it with a compare on it.
 */

function repairOther(ctx: LeaderContext, snapshot: ClusterSnapshot, marker: OperationMarker): Promise<void> {
  const REPAIRS: Readonly<Record<TopologyOperationKind, OperationRepair | undefined>> = {
    'add-node': undefined,
    'remove-node': undefined,
    init: repairInit,
    rebalance: repairRebalance,
    'stop-rebalance': repairRebalance,
    failover: repairFailover,
    recover: repairRecover,
    settings: repairSettings,
  };
  return REPAIRS[marker.kind]?.(ctx, snapshot, marker) ?? Promise.resolve();
}
