import { describe, expect, it } from 'vitest';
import { DcpProducer } from '../../src/producer/index.js';
import * as p from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

const k = (s: string) => Buffer.from(s);
const tick = () => new Promise((r) => setImmediate(r));
async function settle(rounds = 20) {
  for (let i = 0; i < rounds; i++) await tick();
}

async function setup(vbuckets = 4, openFlags = p.OpenFlag.Producer, clock?: p.Clock) {
  const store = await Store.open({
    vbuckets,
    initialStates: new Map([...Array(vbuckets).keys()].map((i) => [i, p.VBucketState.Active])),
  });
  const frames: p.Frame[] = [];
  let closedWith: Error | undefined;
  let full = false;
  const producer = new DcpProducer({
    name: 'test',
    openFlags,
    store,
    clock,
    sink: {
      write(chunks) {
        for (const f of p.decodeFrames(Buffer.concat(chunks))) frames.push(f);
        return !full;
      },
      close(reason) {
        closedWith = reason;
      },
    },
  });
  const send = (bytes: Buffer) => producer.handleFrame(p.decodeFrame(bytes));
  const streamReq = (vbucket: number, opaque: number, o: Partial<p.StreamReqRequest> = {}) =>
    send(
      p.encodeStreamReq({
        opaque,
        vbucket,
        flags: 0,
        startSeqno: 0n,
        endSeqno: p.SEQNO_INFINITY,
        vbucketUuid: 0n,
        snapStartSeqno: 0n,
        snapEndSeqno: 0n,
        ...o,
      }),
    );
  return {
    store,
    producer,
    frames,
    send,
    streamReq,
    setFull: (v: boolean) => {
      full = v;
    },
    closed: () => closedWith,
    ops: () => frames.map((f) => `${f.isResponse ? 'res' : 'req'}:${p.opcodeName(f.opcode)}`),
  };
}

describe('DcpProducer streams', () => {
  it('backfills one disk snapshot of the latest versions, then streams new writes in memory snapshots', async () => {
    const t = await setup();
    const vb = t.store.vbucket(1);
    vb.mutate({ op: 'set', key: k('a'), value: k('1') });
    vb.mutate({ op: 'set', key: k('b'), value: k('1') });
    vb.mutate({ op: 'set', key: k('a'), value: k('2') });
    t.streamReq(1, 77);
    await settle();
    const res = p.decodeStreamReqResponse(t.frames[0]!);
    expect(res.status).toBe(p.Status.Success);
    expect(res.failoverLog).toEqual(vb.failoverLog);
    const marker = p.decodeSnapshotMarker(t.frames[1]!);
    expect(marker).toMatchObject({
      opaque: 77,
      vbucket: 1,
      startSeqno: 0n,
      endSeqno: 3n,
      flags: p.SnapshotFlag.Disk | p.SnapshotFlag.Checkpoint,
    });
    expect(t.frames.slice(2).map((f) => p.decodeMutation(f).bySeqno)).toEqual([2n, 3n]);
    t.frames.length = 0;
    vb.mutate({ op: 'set', key: k('c'), value: k('1') });
    vb.remove(k('b'));
    await settle();
    expect(t.ops()).toEqual(['req:DCP_SNAPSHOT_MARKER', 'req:DCP_MUTATION', 'req:DCP_DELETION']);
    expect(p.decodeSnapshotMarker(t.frames[0]!)).toMatchObject({
      startSeqno: 4n,
      endSeqno: 5n,
      flags: p.SnapshotFlag.Memory,
    });
    expect(p.decodeDeletion(t.frames[2]!)).toMatchObject({ version: 1, bySeqno: 5n, key: k('b') });
  });

  it('ends a stream with STREAM_END(OK) at its end seqno', async () => {
    const t = await setup();
    const vb = t.store.vbucket(0);
    for (let i = 0; i < 5; i++) vb.mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    t.streamReq(0, 5, { endSeqno: 3n });
    await settle();
    expect(t.ops().at(-1)).toBe('req:DCP_STREAM_END');
    expect(p.decodeStreamEnd(t.frames.at(-1)!).reason).toBe(p.StreamEndReason.OK);
    expect(
      t.frames.filter((f) => f.opcode === p.Opcode.DCP_MUTATION).map((f) => p.decodeMutation(f).bySeqno),
    ).toEqual([1n, 2n, 3n]);
    expect(t.producer.stream(0)).toBeUndefined();
  });

  it('answers a bad range with ERANGE, a second stream with EEXISTS and a non-active vBucket with NOT_MY_VBUCKET', async () => {
    const t = await setup();
    t.streamReq(0, 1, { startSeqno: 5n, snapStartSeqno: 6n, snapEndSeqno: 9n });
    t.streamReq(1, 2);
    t.streamReq(1, 3);
    t.store.vbucket(2).setState(p.VBucketState.Pending);
    t.streamReq(2, 4);
    t.store.vbucket(3).setState(p.VBucketState.Replica);
    t.streamReq(3, 5, { flags: p.StreamFlag.ActiveVbOnly });
    t.streamReq(9, 6);
    const statuses = t.frames.filter((f) => f.isResponse).map((f) => [f.opaque, p.statusName(f.status)]);
    expect(statuses).toEqual([
      [1, 'Erange'],
      [2, 'Success'],
      [3, 'KeyEexists'],
      [4, 'NotMyVbucket'],
      [5, 'NotMyVbucket'],
      [6, 'NotMyVbucket'],
    ]);
  });

  it('asks for a rollback when the consumer’s vbuuid is unknown (dcp-spec §7)', async () => {
    const t = await setup();
    const vb = t.store.vbucket(0);
    for (let i = 0; i < 5; i++) vb.mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    t.streamReq(0, 9, { startSeqno: 4n, vbucketUuid: 12345n, snapStartSeqno: 4n, snapEndSeqno: 4n });
    expect(p.decodeStreamReqResponse(t.frames[0]!)).toEqual({
      opaque: 9,
      status: p.Status.Rollback,
      rollbackSeqno: 0n,
    });
    t.frames.length = 0;
    t.streamReq(0, 9, { startSeqno: 7n, vbucketUuid: vb.uuid, snapStartSeqno: 7n, snapEndSeqno: 7n });
    expect(p.decodeStreamReqResponse(t.frames[0]!)).toEqual({
      opaque: 9,
      status: p.Status.Rollback,
      rollbackSeqno: 5n,
    });
  });

  it('closes a stream with STREAM_END(Closed) when negotiated, and answers a second close with KEY_ENOENT', async () => {
    const t = await setup();
    t.send(p.encodeControl({ opaque: 1, key: 'send_stream_end_on_client_close_stream', value: 'true' }));
    t.streamReq(0, 3);
    await settle();
    t.frames.length = 0;
    t.send(p.encodeCloseStream({ opaque: 44, vbucket: 0 }));
    t.send(p.encodeCloseStream({ opaque: 45, vbucket: 0 }));
    expect(t.ops()).toEqual(['res:DCP_CLOSE_STREAM', 'req:DCP_STREAM_END', 'res:DCP_CLOSE_STREAM']);
    expect(p.decodeStreamEnd(t.frames[1]!)).toEqual({
      opaque: 3,
      vbucket: 0,
      reason: p.StreamEndReason.Closed,
    });
    expect(t.frames[2]!.status).toBe(p.Status.KeyEnoent);
  });

  it('answers unknown control keys with EINVAL and known-but-unsupported ones with NOT_SUPPORTED', async () => {
    const t = await setup();
    t.send(p.encodeControl({ opaque: 1, key: 'no_such_key', value: 'x' }));
    t.send(p.encodeControl({ opaque: 2, key: 'enable_stream_id', value: 'true' }));
    t.send(p.encodeControl({ opaque: 3, key: 'set_priority', value: 'high' }));
    expect(t.frames.map((f) => p.statusName(f.status))).toEqual(['Einval', 'NotSupported', 'Success']);
  });

  it('never has more than the window plus one message outstanding, and resumes on BUFFER_ACK', async () => {
    const t = await setup();
    t.send(p.encodeControl({ opaque: 1, key: 'connection_buffer_size', value: '4096' }));
    const vb = t.store.vbucket(0);
    for (let i = 0; i < 200; i++) vb.mutate({ op: 'set', key: k(`k${i}`), value: Buffer.alloc(100) });
    t.streamReq(0, 2);
    await settle();
    const counted = () => t.frames.filter((f) => !f.isResponse).reduce((n, f) => n + f.length, 0);
    const first = counted();
    expect(first).toBeGreaterThanOrEqual(4096);
    expect(first).toBeLessThan(4096 + 200);
    await settle();
    expect(counted()).toBe(first);
    t.send(p.encodeBufferAck({ opaque: 0, vbucket: 0, bytes: first }));
    await settle();
    expect(counted()).toBeGreaterThanOrEqual(2 * 4096);
    expect(counted()).toBeLessThan(first + 4096 + 200);
  });

  it('gives every stream of a connection its turn (a big backfill does not starve the others)', async () => {
    const t = await setup();
    const big = t.store.vbucket(0);
    for (let i = 0; i < 5000; i++) big.mutate({ op: 'set', key: k(`k${i}`), value: Buffer.alloc(200) });
    t.store.vbucket(1).mutate({ op: 'set', key: k('small'), value: k('v') });
    t.streamReq(0, 1);
    t.streamReq(1, 2);
    await settle(3);
    const smallAt = t.frames.findIndex((f) => f.opcode === p.Opcode.DCP_MUTATION && f.vbucket === 1);
    expect(smallAt).toBeGreaterThan(0);
    expect(smallAt).toBeLessThan(400);
  });

  it('runs the takeover states: pending → dead here → active → STREAM_END(OK)', async () => {
    const t = await setup();
    const vb = t.store.vbucket(2);
    for (let i = 0; i < 3; i++) vb.mutate({ op: 'set', key: k(`k${i}`), value: k('v') });
    t.streamReq(2, 8, { flags: p.StreamFlag.TakeOver });
    await settle();
    expect(t.ops()).toEqual([
      'res:DCP_STREAM_REQ',
      'req:DCP_SNAPSHOT_MARKER',
      'req:DCP_MUTATION',
      'req:DCP_MUTATION',
      'req:DCP_MUTATION',
      'req:DCP_SET_VBUCKET_STATE',
    ]);
    expect(p.decodeSetVBucketState(t.frames.at(-1)!).state).toBe(p.VBucketState.Pending);
    expect(t.producer.stream(2)!.state).toBe('takeover-wait');
    // a refusal is not an ack
    t.send(
      p.encodeStatusResponse({
        opcode: p.Opcode.DCP_SET_VBUCKET_STATE,
        opaque: 8,
        status: p.Status.Etmpfail,
      }),
    );
    await settle();
    expect(vb.state).toBe(p.VBucketState.Active);
    expect(t.producer.stream(2)!.state).toBe('takeover-wait');
    vb.mutate({ op: 'set', key: k('late'), value: k('v') });
    t.frames.length = 0;
    t.send(
      p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque: 8, status: p.Status.Success }),
    );
    expect(vb.state).toBe(p.VBucketState.Dead);
    await settle();
    expect(t.ops()).toEqual(['req:DCP_SNAPSHOT_MARKER', 'req:DCP_MUTATION', 'req:DCP_SET_VBUCKET_STATE']);
    expect(p.decodeSetVBucketState(t.frames.at(-1)!).state).toBe(p.VBucketState.Active);
    t.frames.length = 0;
    t.send(
      p.encodeStatusResponse({ opcode: p.Opcode.DCP_SET_VBUCKET_STATE, opaque: 8, status: p.Status.Success }),
    );
    await settle();
    expect(t.ops()).toEqual(['req:DCP_STREAM_END']);
    expect(p.decodeStreamEnd(t.frames[0]!).reason).toBe(p.StreamEndReason.OK);
  });

  it('refuses a takeover stream on a pending or dead vBucket', async () => {
    const t = await setup();
    t.store.vbucket(0).setState(p.VBucketState.Dead);
    t.streamReq(0, 1, { flags: p.StreamFlag.TakeOver });
    expect(t.frames[0]!.status).toBe(p.Status.NotMyVbucket);
  });

  it('ends a replica stream with StateChanged when its vBucket stops being active', async () => {
    const t = await setup();
    t.streamReq(3, 4);
    await settle();
    t.frames.length = 0;
    t.store.vbucket(3).setState(p.VBucketState.Dead);
    await settle();
    expect(p.decodeStreamEnd(t.frames[0]!).reason).toBe(p.StreamEndReason.StateChanged);
  });

  it('drops a consumer that leaves a NOOP unanswered for an interval', async () => {
    const clock = new ManualClock();
    const t = await setup(4, p.OpenFlag.Producer, clock);
    t.send(p.encodeControl({ opaque: 1, key: 'enable_noop', value: 'true' }));
    t.send(p.encodeControl({ opaque: 2, key: 'set_noop_interval', value: '0.05' }));
    const noops = () => t.frames.filter((f) => f.opcode === p.Opcode.DCP_NOOP && !f.isResponse).length;
    clock.advance(50);
    expect(noops()).toBe(1);
    clock.advance(49);
    expect(t.closed()).toBeUndefined();
    clock.advance(1);
    expect(t.closed()?.message).toMatch(/consumer did not answer a NOOP within 50 ms/);
    expect(noops()).toBe(1);
    expect(clock.pending).toBe(0);
  });

  it('keeps a consumer that answers each NOOP, noops each interval and reports the round trip', async () => {
    const clock = new ManualClock();
    const t = await setup(4, p.OpenFlag.Producer, clock);
    t.send(p.encodeControl({ opaque: 1, key: 'enable_noop', value: 'true' }));
    t.send(p.encodeControl({ opaque: 2, key: 'set_noop_interval', value: '0.05' }));
    clock.advance(50);
    for (let i = 0; i < 20; i++) {
      const noop = t.frames.at(-1)!;
      expect(noop.opcode).toBe(p.Opcode.DCP_NOOP);
      clock.advance(3);
      t.send(p.encodeStatusResponse({ opcode: p.Opcode.DCP_NOOP, opaque: noop.opaque, status: 0 }));
      clock.advance(47);
    }
    expect(t.closed()).toBeUndefined();
    expect(t.producer.getStats()).toMatchObject({
      noopsSent: 21,
      noop: { unanswered: 1, noopsAnswered: 20, lastRoundTripMs: 3 },
    });
  });
});
