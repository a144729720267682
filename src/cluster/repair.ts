import type { OperationMarker, TopologyOperationKind } from './types.js';

/**
 * What a leader does with an unfinished operation left by an earlier one (Couchbase's rule,
 * chronicle_master `recovery_oper`): an interrupted add-node is rolled back (the node is removed again), any
 * other operation is rolled forward (run again from where it stopped; every step is idempotent).
 */
export type RepairDirection = 'rollback' | 'rollforward';

export function repairDirection(kind: TopologyOperationKind): RepairDirection {
  return kind === 'add-node' ? 'rollback' : 'rollforward';
}

/**
 * Whether the marker's operation gets a recorded result by its repair. A rolled-back add-node records
 * nothing, so the caller's retry with the same op id runs it again (and succeeds); a rolled-forward
 * operation finished, so its id answers `done`.
 */
export function repairRecordsResult(marker: OperationMarker): boolean {
  return repairDirection(marker.kind) === 'rollforward';
}
