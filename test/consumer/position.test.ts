import { describe, expect, it } from 'vitest';
import { positionAfterRollback } from '../../src/consumer/position.js';

describe('positionAfterRollback (dcp-spec §7)', () => {
  // a replica restarted uncleanly twice at seqno 100 without a stream in between: two entries of its
  // own on top of the producer's branch, all starting at 100
  const log = [
    { vbuuid: 3n, seqno: 100n },
    { vbuuid: 2n, seqno: 100n },
    { vbuuid: 1n, seqno: 40n },
  ];
  const at100 = { vbuuid: 3n, seqno: 100n, snapshotStart: 90n, snapshotEnd: 120n };

  it('retries a rollback to 0 with the next older branch when the refused one starts at our seqno', () => {
    const first = positionAfterRollback(at100, 0n, log);
    expect(first).toEqual({ position: { ...at100, vbuuid: 2n }, previousVbuuidRetry: true });
    const second = positionAfterRollback(first.position, 0n, log);
    expect(second).toEqual({ position: { ...at100, vbuuid: 1n }, previousVbuuidRetry: true });
  });

  it('rolls back to 0 once the oldest branch is refused too, so the retries end', () => {
    const last = positionAfterRollback({ ...at100, vbuuid: 1n }, 0n, log);
    expect(last).toEqual({
      position: { vbuuid: 0n, seqno: 0n, snapshotStart: 0n, snapshotEnd: 0n },
      previousVbuuidRetry: false,
    });
  });

  it('rolls back to the given seqno on the branch that holds it', () => {
    expect(positionAfterRollback(at100, 50n, log).position).toEqual({
      vbuuid: 1n,
      seqno: 50n,
      snapshotStart: 50n,
      snapshotEnd: 50n,
    });
  });
});
