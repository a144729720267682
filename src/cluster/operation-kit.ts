import { absent, del, holds, type LeaderContext, put } from './context.js';
import { type ClusterSnapshot, keys } from './layout.js';
import { SimulatedCrash } from './steps.js';
import {
  ClusterCallError,
  type NodeAddress,
  type OperationArgs,
  type OperationMarker,
  type OperationResult,
  type TopologyOperationRequest,
} from './types.js';

// What every topology operation uses (operations.ts dispatches; each kind's module builds on these).

/** The marker of `request`: its kind and arguments, with the writer's epoch. */
export function markerOf(request: TopologyOperationRequest, epoch: number): OperationMarker {
  const { opId, kind, ...args } = request;
  return { opId, kind, args, epoch };
}

export function permanent(message: string, context: Record<string, unknown> = {}): ClusterCallError {
  return new ClusterCallError('permanent', message, context);
}

/** The node an operation names (add-node, remove-node, failover, recover); refused when absent. */
export function requireNode(args: OperationArgs): NodeAddress {
  if (args.node === undefined) throw permanent('the operation names no node');
  return args.node;
}

/** Errors that mean "stop acting now": never followed by a repair from this process. */
export function stopsActing(error: unknown): boolean {
  return (
    error instanceof SimulatedCrash || (error instanceof ClusterCallError && error.errorClass === 'fenced')
  );
}

/** Records `result` under the op id (guarded, only if the id has none yet). */
export async function record(ctx: LeaderContext, result: OperationResult): Promise<OperationResult> {
  await ctx.term.txn([absent(keys.result(result.opId))], [put(keys.result(result.opId), result)]);
  return result;
}

/** Clears the marker (compare: it is still the one written, with its epoch) and records the result. */
export async function clearMarker(
  ctx: LeaderContext,
  markerValue: Uint8Array,
  result: OperationResult | undefined,
): Promise<void> {
  const ops = [del(keys.marker)];
  if (result) ops.push(put(keys.result(result.opId), result));
  await ctx.term.txn([holds(keys.marker, markerValue)], ops);
}

/** Set by an operation once its marker is written (a fence before it means nothing was applied). */
export interface Progress {
  markerWritten: boolean;
}

/** One operation kind's run, from a fresh snapshot with no marker in it. */
export type OperationRun = (
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  request: TopologyOperationRequest,
  progress: Progress,
) => Promise<OperationResult>;

/** One operation kind's repair of its unfinished marker. */
export type OperationRepair = (
  ctx: LeaderContext,
  snapshot: ClusterSnapshot,
  marker: OperationMarker,
) => Promise<void>;
