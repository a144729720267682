import type { FailoverEntry } from '../protocol/index.js';

/**
 * Where a stream stands: one serialisable value handed out after every event (DESIGN.md, "Lessons").
 * `seqno` is the last seqno held; the snapshot is the one it belongs to.
 */
export interface StreamPosition {
  vbuuid: bigint;
  seqno: bigint;
  snapshotStart: bigint;
  snapshotEnd: bigint;
}

export const BEGINNING: StreamPosition = Object.freeze({
  vbuuid: 0n,
  seqno: 0n,
  snapshotStart: 0n,
  snapshotEnd: 0n,
});

/**
 * The position to re-request from after a ROLLBACK to `to` (dcp-spec §7). kv_engine's optimisation:
 * a rollback to 0 of a branch that starts exactly at our seqno is retried with the next older entry's
 * vbuuid instead (the branch point itself is shared history). Each retry walks one entry further down
 * the log, so branches that all start at our seqno (one per unclean restart of a replica, which adds
 * one without new data) are passed one by one, and the walk ends at the oldest.
 */
export function positionAfterRollback(
  current: StreamPosition,
  to: bigint,
  failoverLog: readonly FailoverEntry[],
): { position: StreamPosition; previousVbuuidRetry: boolean } {
  if (to === 0n && current.seqno !== 0n) {
    const index = failoverLog.findIndex((e) => e.vbuuid === current.vbuuid);
    const tried = failoverLog[index];
    const older = failoverLog[index + 1];
    if (tried && older && tried.seqno === current.seqno) {
      return { position: { ...current, vbuuid: older.vbuuid }, previousVbuuidRetry: true };
    }
  }
  const seqno = to < current.seqno ? to : current.seqno;
  const vbuuid = seqno === 0n ? 0n : branchAt(failoverLog, seqno);
  return {
    position: { vbuuid, seqno, snapshotStart: seqno, snapshotEnd: seqno },
    previousVbuuidRetry: false,
  };
}

/** The vbuuid of the failover-log branch that holds `seqno` (newest entry starting at or below it). */
export function branchAt(failoverLog: readonly FailoverEntry[], seqno: bigint): bigint {
  for (const entry of failoverLog) if (entry.seqno <= seqno) return entry.vbuuid;
  return failoverLog.at(-1)?.vbuuid ?? 0n;
}
