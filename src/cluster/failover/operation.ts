import type { LeaderContext } from '../context.js';
import type { ClusterSnapshot } from '../layout.js';
import { type OperationRun, permanent } from '../operation-kit.js';
import type { OperationMarker } from '../types.js';

// Placeholder until the failover module lands (issue 12): refuses plainly.
export const runFailover: OperationRun = async (_ctx, _snapshot, request) => {
  throw permanent(`${request.kind} is not available in this build`);
};

export const runRecover: OperationRun = runFailover;

export async function repairFailover(
  _ctx: LeaderContext,
  _snapshot: ClusterSnapshot,
  _marker: OperationMarker,
): Promise<void> {}

export const repairRecover = repairFailover;
