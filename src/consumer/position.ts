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
 * a rollback to 0 whose newest failover entry starts exactly at our seqno is retried with the previous
 * entry's vbuuid instead (the branch point itself is shared history).
 */
export function positionAfterRollback(
  current: StreamPosition,
  to: bigint,
  failoverLog: readonly FailoverEntry[],
): { position: StreamPosition; previousVbuuidRetry: boolean } {
  if (
    to === 0n &&
    failoverLog.length > 1 &&
    failoverLog[0]!.seqno === current.seqno &&
    current.seqno !== 0n
  ) {
    return {
      position: {
        ...current,
        vbuuid: failoverLog[1]!.vbuuid,
        snapshotStart: current.seqno,
        snapshotEnd: current.seqno,
      },
      previousVbuuidRetry: true,
    };
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
