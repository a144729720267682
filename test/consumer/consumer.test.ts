import { describe, expect, it } from 'vitest';
import * as p from '../../src/protocol/index.js';
import { contentOf, makePair } from '../helpers/pair.js';

const k = (s: string) => Buffer.from(s);

describe('DcpConsumer with DcpProducer back to back', () => {
  it('replicates backfill and live writes, and answers ADD_STREAM with its new stream opaque', async () => {
    const t = await makePair();
    for (let i = 0; i < 300; i++)
      t.source.vbucket(i % 4).mutate({ op: 'set', key: k(`k${i % 100}`), value: k(`v${i}`) });
    t.source.vbucket(1).remove(k('k1'));
    for (let vb = 0; vb < 4; vb++) t.addStream(vb);
    await t.until(() => t.toProxy.length === 4);
    const answers = t.toProxy.map((f) => p.decodeAddStreamResponse(f));
    expect(answers.map((a) => a.status)).toEqual([0, 0, 0, 0]);
    expect(new Set(answers.map((a) => a.streamOpaque)).size).toBe(4);
    await t.until(() =>
      [0, 1, 2, 3].every((vb) => t.target.vbucket(vb).highSeqno === t.source.vbucket(vb).highSeqno),
    );
    for (let vb = 0; vb < 4; vb++) expect(contentOf(t.target, vb)).toEqual(contentOf(t.source, vb));
    for (let i = 0; i < 50; i++) t.source.vbucket(2).mutate({ op: 'set', key: k(`live${i}`), value: k('x') });
    await t.until(() => t.target.vbucket(2).highSeqno === t.source.vbucket(2).highSeqno);
    expect(contentOf(t.target, 2)).toEqual(contentOf(t.source, 2));
    expect(t.target.vbucket(2).failoverLog).toEqual(t.source.vbucket(2).failoverLog);
    t.close();
  });

  it('acknowledges the wire size of every message but NOOP so a small window never stalls', async () => {
    const t = await makePair({ bufferSize: 8 * 1024 });
    for (let i = 0; i < 2000; i++)
      t.source.vbucket(0).mutate({ op: 'set', key: k(`k${i}`), value: Buffer.alloc(200) });
    t.addStream(0);
    await t.until(() => t.target.vbucket(0).highSeqno === 2000n, 10_000);
    expect(t.consumer.getStats().acksSent).toBeGreaterThan(10);
    expect(t.producer.getStats().bytesOutstanding).toBeLessThan(8 * 1024 + 300);
    t.close();
  });

  it('rolls back a consumer that is ahead of a failed-over producer and converges to its content', async () => {
    const t = await makePair({ vbuckets: 1 });
    const src = t.source.vbucket(0);
    for (let i = 0; i < 10; i++) src.mutate({ op: 'set', key: k(`k${i}`), value: k('a') });
    t.addStream(0);
    await t.until(() => t.target.vbucket(0).highSeqno === 10n);
    t.closeOnBoth(0);
    await t.until(() => t.toProxy.length >= 2);
    // the producer loses its last 4 items and fails over to a new branch, then takes new writes
    src.setState(p.VBucketState.Replica);
    src.rollback(6n);
    src.setState(p.VBucketState.Active);
    for (let i = 0; i < 3; i++) src.mutate({ op: 'set', key: k(`new${i}`), value: k('b') });
    t.toProxy.length = 0;
    t.addStream(0);
    await t.until(() => t.toProxy.length === 1);
    expect(p.decodeAddStreamResponse(t.toProxy[0]!).status).toBe(0);
    await t.until(() => t.target.vbucket(0).highSeqno === src.highSeqno);
    expect(t.consumer.getStats().rollbacks).toBe(1);
    expect(contentOf(t.target, 0)).toEqual(contentOf(t.source, 0));
    t.close();
  });

  it('answers ADD_STREAM with NOT_MY_VBUCKET when its vBucket is active, and EEXISTS for a second stream', async () => {
    const t = await makePair();
    t.target.vbucket(3).setState(p.VBucketState.Active);
    t.addStream(3, 0, 33);
    t.addStream(1, 0, 11);
    t.addStream(1, 0, 12);
    await t.until(() => t.toProxy.length === 3);
    const byOpaque = Object.fromEntries(t.toProxy.map((f) => [f.opaque, p.statusName(f.status)]));
    expect(byOpaque).toEqual({ 33: 'NotMyVbucket', 11: 'Success', 12: 'KeyEexists' });
    t.close();
  });

  it('drops frames of a retired stream opaque and answers a stale STREAM_END with Success', async () => {
    const t = await makePair({ vbuckets: 1 });
    t.source.vbucket(0).mutate({ op: 'set', key: k('a'), value: k('1') });
    t.addStream(0);
    await t.until(() => t.target.vbucket(0).highSeqno === 1n);
    const old = t.consumer.streamOpaque(0)!;
    t.closeOnBoth(0);
    t.addStream(0);
    await t.until(() => t.consumer.streamOpaque(0) !== undefined && t.consumer.streamOpaque(0) !== old);
    const replies: p.Frame[] = [];
    t.setIntercept((f, from) => {
      if (from === 'consumer' && f.isResponse && f.opcode === p.Opcode.DCP_STREAM_END) replies.push(f);
      return false;
    });
    const stale = p.encodeMutation({
      opaque: old,
      vbucket: 0,
      cas: 1n,
      datatype: 0,
      bySeqno: 99n,
      revSeqno: 1n,
      flags: 0,
      expiration: 0,
      lockTime: 0,
      nru: 0,
      key: k('ghost'),
      value: k('x'),
    });
    t.consumer.handleFrame(p.decodeFrame(stale));
    t.consumer.handleFrame(
      p.decodeFrame(p.encodeStreamEnd({ opaque: old, vbucket: 0, reason: p.StreamEndReason.Closed })),
    );
    await t.until(() => replies.length === 1);
    expect(t.target.vbucket(0).get(k('ghost'))).toBeUndefined();
    expect(replies[0]!.status).toBe(p.Status.Success);
    expect(t.consumer.streamOpaque(0)).not.toBe(old);
    t.source.vbucket(0).mutate({ op: 'set', key: k('b'), value: k('2') });
    await t.until(() => t.target.vbucket(0).highSeqno === 2n);
    // the producer's own STREAM_END(Closed) for the old stream, the injected mutation and stream end
    expect(t.consumer.getStats().staleFramesDropped).toBe(3);
    t.close();
  });

  it('takes over: pending then active here, the source dead, nothing lost', async () => {
    const t = await makePair({ vbuckets: 2 });
    for (let i = 0; i < 100; i++) t.source.vbucket(1).mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    t.addStream(1, p.StreamFlag.TakeOver);
    await t.until(() => t.target.vbucket(1).state === p.VBucketState.Active);
    expect(t.source.vbucket(1).state).toBe(p.VBucketState.Dead);
    expect(contentOf(t.target, 1)).toEqual(contentOf(t.source, 1));
    await t.until(() => t.toProxy.length === 1);
    expect(p.decodeAddStreamResponse(t.toProxy[0]!).status).toBe(0);
    await t.until(() => t.consumer.streamOpaque(1) === undefined);
    t.close();
  });

  it('asks for a retry: retires the stream first, then answers ETMPFAIL; the producer stays in takeover-wait', async () => {
    const t = await makePair({ vbuckets: 1, canTakeState: () => false });
    t.source.vbucket(0).mutate({ op: 'set', key: k('a'), value: k('1') });
    let refusal: p.Frame | undefined;
    t.setIntercept((f, from) => {
      if (from === 'consumer' && f.isResponse && f.opcode === p.Opcode.DCP_SET_VBUCKET_STATE) refusal = f;
      return false;
    });
    t.addStream(0, p.StreamFlag.TakeOver);
    await t.until(() => refusal !== undefined);
    expect(refusal!.status).toBe(p.Status.Etmpfail);
    expect(t.consumer.streamOpaque(0)).toBeUndefined();
    expect(t.consumer.getStats().retryAsks).toBe(1);
    expect(t.source.vbucket(0).state).toBe(p.VBucketState.Active);
    expect(t.producer.stream(0)?.state).toBe('takeover-wait');
    t.close();
  });
});
