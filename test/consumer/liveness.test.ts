import { describe, expect, it } from 'vitest';
import { DcpConsumer } from '../../src/consumer/index.js';
import * as p from '../../src/protocol/index.js';
import { Store } from '../../src/store/index.js';
import { ManualClock } from '../helpers/manual-clock.js';

async function setup() {
  const clock = new ManualClock();
  const store = await Store.open({ vbuckets: 1, initialStates: new Map([[0, p.VBucketState.Replica]]) });
  const sent: p.Frame[] = [];
  let closedWith: Error | undefined;
  const consumer = new DcpConsumer({
    name: 'c',
    store,
    noopIntervalMs: 1_000,
    clock,
    sink: {
      write(chunks) {
        sent.push(...p.decodeFrames(Buffer.concat(chunks)));
        return true;
      },
      close(reason) {
        closedWith = reason;
      },
    },
  });
  consumer.start();
  const ownNoops = () => sent.filter((f) => f.opcode === p.Opcode.DCP_NOOP && !f.isResponse);
  const answer = (f: p.Frame) =>
    consumer.handleFrame(
      p.decodeFrame(p.encodeStatusResponse({ opcode: p.Opcode.DCP_NOOP, opaque: f.opaque, status: 0 })),
    );
  const producerNoop = () => consumer.handleFrame(p.decodeFrame(p.encodeDcpNoop({ opaque: 77 })));
  return { clock, consumer, sent, ownNoops, answer, producerNoop, closed: () => closedWith };
}

describe('DcpConsumer liveness (dcp-spec §4.12)', () => {
  it('noops the producer itself while no stream is open and closes after two silent intervals', async () => {
    const t = await setup();
    t.clock.advance(1_000);
    expect(t.ownNoops()).toHaveLength(1);
    t.clock.advance(999);
    expect(t.closed()).toBeUndefined();
    t.clock.advance(1);
    expect(t.closed()).toMatchObject({ code: 'DCPX_ERR_PEER_SILENT' });
    expect(t.closed()!.message).toBe('c: producer silent for 2000 ms');
    expect(t.ownNoops()).toHaveLength(1);
    expect(t.clock.pending).toBe(0);
  });

  it('keeps a producer that answers its NOOPs and reports their round trip', async () => {
    const t = await setup();
    t.clock.advance(1_000);
    for (let i = 0; i < 10; i++) {
      t.clock.advance(12);
      t.answer(t.ownNoops().at(-1)!);
      t.clock.advance(988);
    }
    expect(t.closed()).toBeUndefined();
    expect(t.consumer.getStats().noop).toMatchObject({
      noopsSent: 11,
      noopsAnswered: 10,
      unanswered: 1,
      lastRoundTripMs: 12,
    });
  });

  it('does not noop while a stream is open: the producer’s NOOPs keep it alive, and their end is silence', async () => {
    const t = await setup();
    t.consumer.handleFrame(p.decodeFrame(p.encodeAddStream({ opaque: 9, vbucket: 0, flags: 0 })));
    expect(t.sent.some((f) => f.opcode === p.Opcode.DCP_STREAM_REQ)).toBe(true);
    for (let i = 0; i < 10; i++) {
      t.clock.advance(1_000);
      t.producerNoop();
    }
    expect(t.ownNoops()).toHaveLength(0);
    expect(t.sent.filter((f) => f.opcode === p.Opcode.DCP_NOOP && f.isResponse)).toHaveLength(10);
    expect(t.closed()).toBeUndefined();
    // silence is checked each quarter interval: found between 2 and 2¼ intervals after the last frame
    t.clock.advance(2_000);
    expect(t.closed()).toBeUndefined();
    t.clock.advance(250);
    expect(t.closed()).toMatchObject({ code: 'DCPX_ERR_PEER_SILENT' });
  });
});
