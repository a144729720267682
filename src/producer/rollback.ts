import type { FailoverEntry } from '../protocol/index.js';

// The producer's rollback decision for a STREAM_REQ, dcp-spec §7, step for step.

export interface RollbackInput {
  startSeqno: bigint;
  vbucketUuid: bigint;
  snapStartSeqno: bigint;
  snapEndSeqno: bigint;
  /** StreamFlag.StrictVbUuid: check the vbuuid even when starting at 0. */
  strictVbUuid: boolean;
  /** StreamFlag.IgnorePurgedTombstones: skip the purge-seqno rule. */
  ignorePurgedTombstones: boolean;
}

export interface VBucketHistory {
  failoverLog: readonly FailoverEntry[];
  highSeqno: bigint;
  purgeSeqno: bigint;
}

export type RollbackDecision = { rollback: false } | { rollback: true; seqno: bigint; reason: string };

export function decideRollback(request: RollbackInput, vb: VBucketHistory): RollbackDecision {
  let { snapStartSeqno: snapStart, snapEndSeqno: snapEnd } = request;
  const start = request.startSeqno;
  // 1. adjust the snapshot range to the start
  if (start === snapEnd) snapStart = snapEnd;
  if (start === snapStart) snapEnd = snapStart;
  // 2. nothing held, nothing to check
  if (start === 0n && request.vbucketUuid === 0n && !request.strictVbUuid) return { rollback: false };
  // 3. history below the purge seqno is gone
  if (!request.ignorePurgedTombstones && start !== 0n && snapStart < vb.purgeSeqno) {
    return {
      rollback: true,
      seqno: 0n,
      reason: `snapshot start ${snapStart} is below the purge seqno ${vb.purgeSeqno}`,
    };
  }
  // 4. the branch must be known
  const index = vb.failoverLog.findIndex((e) => e.vbuuid === request.vbucketUuid);
  if (index < 0) {
    if (start === 0n && !request.strictVbUuid) return { rollback: false };
    return { rollback: true, seqno: 0n, reason: `vbuuid ${request.vbucketUuid} is not in the failover log` };
  }
  // 5. the branch's end: the next (newer) entry's seqno, or the high seqno for the current branch
  const upper = index === 0 ? vb.highSeqno : vb.failoverLog[index - 1]!.seqno;
  if (snapEnd <= upper) return { rollback: false };
  if (snapStart > upper) {
    return {
      rollback: true,
      seqno: upper,
      reason: `snapshot ${snapStart}..${snapEnd} lies past the branch end ${upper}`,
    };
  }
  return {
    rollback: true,
    seqno: snapStart,
    reason: `snapshot ${snapStart}..${snapEnd} straddles the branch end ${upper}`,
  };
}
