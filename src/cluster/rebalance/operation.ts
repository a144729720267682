import type { LeaderContext } from '../context.js';
import type { ClusterSnapshot } from '../layout.js';
import { type OperationRun, permanent } from '../operation-kit.js';
import type { OperationMarker } from '../types.js';

// Placeholder until the rebalance module lands (issue 12): refuses plainly.
export const runRebalance: OperationRun = async (_ctx, _snapshot, request) => {
  throw permanent(`${request.kind} is not available in this build`);
};

export const runStopRebalance: OperationRun = runRebalance;

export async function repairRebalance(
  _ctx: LeaderContext,
  _snapshot: ClusterSnapshot,
  _marker: OperationMarker,
): Promise<void> {}
