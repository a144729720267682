import { describe, expect, it } from 'vitest';
import { PassiveDurabilityMonitor } from '../../src/consumer/passive-durability.js';
import { DurabilityLevel } from '../../src/protocol/index.js';

function monitor(initial = 0n, persisted = 0n) {
  const acks: bigint[] = [];
  const m = new PassiveDurabilityMonitor(initial, persisted, (s) => acks.push(s));
  return { m, acks };
}

describe('PassiveDurabilityMonitor', () => {
  it('moves the high prepared seqno over a prepare only once the snapshot holding it is complete', () => {
    const { m, acks } = monitor();
    m.prepareReceived(3n, DurabilityLevel.Majority);
    m.prepareReceived(5n, DurabilityLevel.MajorityAndPersistOnMaster);
    m.snapshotComplete(4n);
    expect(acks).toEqual([3n]);
    m.snapshotComplete(6n);
    expect(acks).toEqual([3n, 5n]);
    m.snapshotComplete(9n);
    expect(acks).toEqual([3n, 5n]);
  });

  it('holds a persistToMajority prepare, and the prepares after it, until it is persisted', () => {
    const { m, acks } = monitor();
    m.prepareReceived(2n, DurabilityLevel.PersistToMajority);
    m.prepareReceived(4n, DurabilityLevel.Majority);
    m.snapshotComplete(4n);
    expect(acks).toEqual([]);
    m.persistedUpTo(3n);
    expect(acks).toEqual([4n]);
  });

  it('acknowledges what the replica holds when a stream starts, up to its first prepare not yet persisted', () => {
    const { m, acks } = monitor(6n, 7n);
    m.start(10n, [
      { bySeqno: 5n, level: DurabilityLevel.PersistToMajority },
      { bySeqno: 9n, level: DurabilityLevel.PersistToMajority },
    ]);
    expect(acks).toEqual([6n]);
    m.persistedUpTo(10n);
    expect(acks).toEqual([6n, 9n]);
  });
});
