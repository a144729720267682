import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { makePair } from '../helpers/pair.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});
const k = (s: string) => Buffer.from(s);

/** A pair whose producer streams sync writes; the acks the consumer sends are collected. */
async function syncPair(targetDurable: boolean) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dcpx-sync-consumer-'));
  dirs.push(dataDir);
  const t = await makePair({
    vbuckets: 1,
    ...(targetDurable ? { targetStore: { dataDir, syncIntervalMs: 3_600_000 } } : {}),
  });
  const acks: bigint[] = [];
  t.setIntercept((frame, from) => {
    if (from === 'consumer' && !frame.isResponse && frame.opcode === p.Opcode.DCP_SEQNO_ACKNOWLEDGED)
      acks.push(p.decodeSeqnoAcknowledged(frame).preparedSeqno);
    return false;
  });
  t.producer.handleFrame(
    p.decodeFrame(p.encodeControl({ opaque: 1, key: 'enable_sync_writes', value: 'true' })),
  );
  t.producer.handleFrame(p.decodeFrame(p.encodeControl({ opaque: 2, key: 'consumer_name', value: 'r' })));
  return { ...t, acks };
}

describe('DcpConsumer with sync writes', () => {
  it('acknowledges a majority prepare once its snapshot is complete, and applies its commit', async () => {
    const t = await syncPair(false);
    t.addStream(0);
    await t.until(() => t.consumer.streamOpaque(0) !== undefined && t.toProxy.length === 1);
    const src = t.source.vbucket(0);
    const prepare = src.prepare({ op: 'set', key: k('a'), value: k('1') }, p.DurabilityLevel.Majority).item!;
    await t.until(() => t.acks.length === 1);
    expect(t.acks).toEqual([prepare.bySeqno]);
    expect(t.target.vbucket(0).get(k('a'))).toBeUndefined();
    src.commit(prepare.bySeqno);
    await t.until(() => t.target.vbucket(0).get(k('a')) !== undefined);
    expect(t.target.vbucket(0).highCompletedSeqno).toBe(1n);
    t.close();
  });

  it('acknowledges a persistToMajority prepare only after the replica fsynced it', async () => {
    const t = await syncPair(true);
    t.addStream(0);
    await t.until(() => t.toProxy.length === 1);
    const src = t.source.vbucket(0);
    src.prepare({ op: 'set', key: k('m'), value: k('1') }, p.DurabilityLevel.Majority);
    const persist = src.prepare(
      { op: 'set', key: k('p'), value: k('2') },
      p.DurabilityLevel.PersistToMajority,
    ).item!;
    await t.until(() => t.target.vbucket(0).highSeqno === persist.bySeqno);
    // the snapshot is complete: the majority prepare is acknowledged (at once), the persist one not yet
    expect(t.consumer.getStats().seqnoAcksSent).toBe(1);
    await t.until(() => t.acks.length === 1);
    await t.target.commit();
    t.target.sync();
    expect(t.consumer.getStats().seqnoAcksSent).toBe(2);
    await t.until(() => t.acks.length === 2);
    expect(t.acks).toEqual([1n, persist.bySeqno]);
    t.close();
    await t.target.close();
  });

  it('acknowledges the prepares a replica already holds when its stream starts again', async () => {
    const t = await syncPair(false);
    t.addStream(0);
    await t.until(() => t.toProxy.length === 1);
    const src = t.source.vbucket(0);
    src.prepare({ op: 'set', key: k('a'), value: k('1') }, p.DurabilityLevel.Majority);
    await t.until(() => t.acks.length === 1);
    t.closeOnBoth(0);
    await t.until(() => t.toProxy.length === 3);
    t.addStream(0, 0, 7);
    await t.until(() => t.acks.length === 2);
    expect(t.acks).toEqual([1n, 1n]);
    t.close();
  });
});
